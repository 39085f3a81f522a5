"""The BiLSTM sentiment classifier's arithmetic for training, in plain JAX (the Flax module that
trains it is batchscore.model.network; scoring runs batchscore.model.scoring_pass on CPU and
batchscore.model.cudnn on GPU, and never imports Flax).

Embedding -> `num_layers` bidirectional LSTM layers -> [output at the first
position, output at the last real position] (4 x hidden), optionally followed by
the max and/or mean of the outputs over the real positions (2 x hidden each)
-> Dense(num_classes).

Speed comes from the layout, not from tricks in the loop:
- everything runs time-major, (T, B, ...), so the scan reads and writes contiguous steps and
  nothing is transposed;
- the input projections of every time step are plain 2-D matmuls outside the recurrence; the
  scan body only does the h @ W_h matmul;
- both directions run in the same scan: the backward direction reads each row
  reversed *within its length*, so padding is always at the end and never enters
  a real position's state. No masking is needed inside the loop, and a row's
  result does not depend on how much padding its batch has;
- the last layer's scan collects the head's features as it goes (recur_to_features), so its
  outputs are never stored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp

POOLINGS = ("max", "mean")


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    embed_dim: int = 50
    hidden: int = 100
    num_layers: int = 2
    num_classes: int = 2
    dropout: float = 0.0  # on embeddings, between layers and before the head (training only)
    pooling: tuple[str, ...] = ()  # extra head features: any of POOLINGS, in this order

    def __post_init__(self) -> None:
        pooling = tuple(self.pooling)
        if any(p not in POOLINGS for p in pooling) or len(set(pooling)) != len(pooling):
            raise ValueError(f"pooling must be distinct names from {POOLINGS}, got {list(pooling)}")
        object.__setattr__(self, "pooling", pooling)  # JSON gives a list; jit needs it hashable

    def to_dict(self) -> dict:
        return {**asdict(self), "pooling": list(self.pooling)}

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return cls(**data)

    @property
    def head_width(self) -> int:
        """First and last outputs (2 x 2H) plus 2H per pooled summary."""
        return 2 * self.hidden * (2 + len(self.pooling))

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Flat parameter names -> shapes, used to validate bundles before loading."""
        h4 = 4 * self.hidden
        shapes = {"embedding/embedding": (self.vocab_size, self.embed_dim)}
        for layer in range(self.num_layers):
            d_in = self.embed_dim if layer == 0 else 2 * self.hidden
            shapes[f"lstm_{layer}/w_input"] = (2, d_in, h4)
            shapes[f"lstm_{layer}/w_hidden"] = (2, self.hidden, h4)
            shapes[f"lstm_{layer}/bias"] = (2, h4)
        shapes["head/kernel"] = (self.head_width, self.num_classes)
        shapes["head/bias"] = (self.num_classes,)
        return shapes


def reverse_within_length(x: jax.Array, lengths: jax.Array, time_axis: int = 1) -> jax.Array:
    """Reverse each row's first `length` steps along `time_axis` (1: batch-major (B, T, ...), 0:
    time-major (T, B, ...)); later steps stay put."""
    steps = jnp.arange(x.shape[time_axis])
    if time_axis == 0:
        steps, row_lengths = steps[:, None], lengths[None, :]
    else:
        steps, row_lengths = steps[None, :], lengths[:, None]
    source = jnp.where(steps < row_lengths, row_lengths - 1 - steps, steps)
    source = source.reshape(source.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, source, axis=time_axis)


Gates = tuple[jax.Array, jax.Array]  # input gates of every step, (T, B, 4H) per direction


def project(forward_in: jax.Array, backward_in: jax.Array, w_input: jax.Array, bias: jax.Array) -> Gates:
    """Input gates of every step for both directions, from each direction's (T, B, D) inputs.

    Two plain 2-D matmuls, (T*B, D) @ (D, 4H), kept apart: the batched einsum with a time-major
    (T, 2, B, 4H) output this replaced ran at a quarter of the speed on XLA:CPU (3.0 s vs 0.75 s on
    512 x 256 rows) and was the largest single cost of the forward pass, and stacking the
    two directions costs a copy the scan does not need (it stacks each step's slices in cache).
    """
    return forward_in @ w_input[0] + bias[0], backward_in @ w_input[1] + bias[1]


def next_layer_inputs(hs: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Both directions' inputs (T, B, 2H) to the next layer from a layer's (T, 2, B, H) outputs.

    The backward direction runs on each row reversed within its length, so its outputs come out in
    that reversed order: the forward direction reads [forward; backward re-reversed], the backward
    direction [forward reversed; backward as it is]. Padding stays at the end in both.
    """
    forward, backward = hs[:, 0], hs[:, 1]
    forward_in = jnp.concatenate([forward, reverse_within_length(backward, lengths, 0)], axis=-1)
    backward_in = jnp.concatenate([reverse_within_length(forward, lengths, 0), backward], axis=-1)
    return forward_in, backward_in


def gate_scale(hidden: int, dtype=jnp.float32) -> jax.Array:
    """Per-gate-column factors (4H,): 0.5 for the sigmoid gates i, f, o and 1 for the candidate g.

    sigmoid(x) = 0.5 * tanh(x / 2) + 0.5, so with the i/f/o columns of W_in, W_h and the bias
    halved, all four gates are ONE tanh over the contiguous (..., 4H) pre-activation followed by
    one multiply-add. XLA:CPU then vectorises the cell; with separate sigmoids it expands each to
    1 / (1 + exp(-x)) over four slices and emits scalar code (the recurrence ran about 2x slower).
    Scaling the weights (never the bundle, see prescale_gates) keeps the model and its file unchanged.
    """
    half = jnp.full((hidden,), 0.5, dtype)
    return jnp.concatenate([half, half, jnp.ones((hidden,), dtype), half])


def cell_gates(z: jax.Array, prescaled: bool) -> list[jax.Array]:
    """The gates i, f, g, o of (..., 4H) pre-activations.

    prescaled=True (the tanh cell scoring_pass runs): the pre-activations come from weights
    pre-scaled by gate_scale(), and all gates are one tanh (see there). prescaled=False (training):
    three sigmoids, whose gradients XLA:CPU computes 6-10% faster (benchmarks/cell.py); the two agree
    to rounding.
    """
    if prescaled:
        slope = gate_scale(z.shape[-1] // 4, jnp.float32)  # 0.5 where a sigmoid is wanted, 1 for g
        return jnp.split(jnp.tanh(z) * slope + (1.0 - slope), 4, axis=-1)
    i, f, g, o = jnp.split(z, 4, axis=-1)
    return [jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)]


def _step_function(w_hidden: jax.Array, prescaled: bool):
    """One LSTM step for both directions: (h, c), input gates (2, B, 4H) -> (h, c), gates as
    cell_gates() says."""

    def step(h: jax.Array, c: jax.Array, gates_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        i, f, g, o = cell_gates(gates_t + jnp.einsum("zbh,zhg->zbg", h, w_hidden), prescaled)
        c = f * c + i * g
        return o * jnp.tanh(c), c

    return step


def recur(gates_in: Gates, w_hidden: jax.Array, prescaled: bool = False) -> jax.Array:
    """The recurrence for both directions in one scan: input gates -> (T, 2, B, H) outputs,
    time-major, the backward direction in its own (reversed-within-length) order."""
    step = _step_function(w_hidden, prescaled)

    def body(carry, inputs_t):
        h, c = step(*carry, jnp.stack(inputs_t))
        return (h, c), h

    zeros = jnp.zeros((2, gates_in[0].shape[1], w_hidden.shape[1]), w_hidden.dtype)
    return jax.lax.scan(body, (zeros, zeros), gates_in)[1]


def recur_to_features(
    gates_in: Gates,
    w_hidden: jax.Array,
    lengths: jax.Array,
    pooling: tuple[str, ...] = (),
    prescaled: bool = False,
) -> jax.Array:
    """The last layer's recurrence, returning the head's input (B, head_width) instead of its outputs.

    The features are gathered while the scan runs, so the outputs are never stored or read back
    (reducing a stored (T, B, H) over T cost 20% of the forward pass on XLA:CPU):
    - step 0 gives the forward output at the first position and the backward output at the last;
    - the step at each row's length - 1 gives the forward output at its last real position and the
      backward output at its first (the backward direction reads the row reversed);
    - max and mean run over the steps before each row's length only, so padding never counts.
    Feature order: first, last, then `pooling`'s summaries, each [forward; backward].
    """
    step = _step_function(w_hidden, prescaled)
    forward, backward = gates_in
    zeros = jnp.zeros((2, forward.shape[1], w_hidden.shape[1]), w_hidden.dtype)
    h0, c0 = step(zeros, zeros, jnp.stack([forward[0], backward[0]]))  # step 0: its outputs are kept
    last_index = (lengths - 1)[None, :, None]

    def body(carry, inputs):
        (h, c), at_length_end, maximum, total = carry
        forward_t, backward_t, t = inputs
        h, c = step(h, c, jnp.stack([forward_t, backward_t]))
        real = t < lengths[None, :, None]
        at_length_end = jnp.where(t == last_index, h, at_length_end)
        maximum = jnp.where(real, jnp.maximum(maximum, h), maximum)
        total = total + jnp.where(real, h, 0.0)
        return ((h, c), at_length_end, maximum, total), None

    steps = jnp.arange(1, forward.shape[0])
    carry = ((h0, c0), h0, h0, h0)
    (_, at_length_end, maximum, total), _ = jax.lax.scan(body, carry, (forward[1:], backward[1:], steps))

    def both(x: jax.Array) -> jax.Array:  # (2, B, H) -> (B, 2H), [forward; backward]
        return jnp.concatenate([x[0], x[1]], axis=-1)

    first = jnp.concatenate([h0[0], at_length_end[1]], axis=-1)
    last = jnp.concatenate([at_length_end[0], h0[1]], axis=-1)
    pooled = {"max": both(maximum), "mean": both(total) / lengths[:, None].astype(total.dtype)}
    return jnp.concatenate([first, last, *(pooled[kind] for kind in pooling)], axis=-1)


def batch_major_head_features(x: jax.Array, lengths: jax.Array, pooling: tuple[str, ...] = ()) -> jax.Array:
    """The head's input from (B, T, 2H) outputs in input order (the cuDNN path's layout), the same
    features as recur_to_features(): first, last, then the pooled summaries over real positions."""
    last = jnp.take_along_axis(x, (lengths - 1)[:, None, None], axis=1)[:, 0]
    real = (jnp.arange(x.shape[1])[None, :] < lengths[:, None])[:, :, None]
    pooled = {
        "max": jnp.max(jnp.where(real, x, -jnp.inf), axis=1),
        "mean": jnp.sum(jnp.where(real, x, 0.0), axis=1) / lengths[:, None].astype(x.dtype),
    }
    return jnp.concatenate([x[:, 0], last, *(pooled[kind] for kind in pooling)], axis=-1)


def flatten_params(params: dict) -> dict[str, jax.Array]:
    return {"/".join(k): v for k, v in _walk(params, ())}


def _walk(tree: dict, prefix: tuple[str, ...]):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _walk(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def unflatten_params(flat: dict[str, jax.Array]) -> dict:
    tree: dict = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def prescale_gates(params: dict) -> dict:
    """The parameters the tanh cell runs on: every LSTM layer's W_in, W_h and bias times gate_scale().

    Done once when a model is loaded for scoring (scoring_pass.scoring_weights); the bundle and
    training keep the plain weights. Halving is exact in floating point, so the tanh cell sees the
    same numbers.
    """
    scaled = dict(params)
    for name, layer in params.items():
        if name.startswith("lstm_"):
            scale = gate_scale(layer["w_hidden"].shape[1], layer["w_hidden"].dtype)
            scaled[name] = {key: value * scale for key, value in layer.items()}
    return scaled


def row_wise_head(features: jax.Array, head: dict) -> jax.Array:
    """The head as a multiply and a sum over features, not a matmul.

    With two output columns XLA:CPU's matmul splits the long feature axis across threads in a
    way that depends on the batch's row count, so a row's logits would move at 1e-7 with its
    batch; a plain reduction adds each row's terms in one fixed order (docs/determinism.md).
    """
    return jnp.sum(features[:, :, None] * head["kernel"][None], axis=1) + head["bias"]
