"""The BiLSTM sentiment classifier (Flax) and its jitted forward pass.

Embedding -> `num_layers` bidirectional LSTM layers -> [output at the first
position, output at the last real position] (4 x hidden), optionally followed by
the max and/or mean of the outputs over the real positions (2 x hidden each)
-> Dense(num_classes).

Speed comes from the layout, not from tricks in the loop:
- the input projections of every time step (both directions) are one matmul
  outside the recurrence; the scan body only does the h @ W_h matmul;
- both directions run in the same scan: the backward direction reads each row
  reversed *within its length*, so padding is always at the end and never enters
  a real position's state. No masking is needed inside the loop, and a row's
  result does not depend on how much padding its batch has.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial

import flax.linen as nn
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


def reverse_within_length(x: jax.Array, lengths: jax.Array) -> jax.Array:
    """Reverse each row's first `length` steps along axis 1; later steps stay put."""
    steps = jnp.arange(x.shape[1])[None, :]
    source = jnp.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return jnp.take_along_axis(x, source[:, :, None], axis=1)


def _lstm_bias_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Zero bias except the forget gate at 1, so early training remembers by default."""
    hidden = shape[-1] // 4
    return jnp.zeros(shape, dtype).at[..., hidden : 2 * hidden].set(1.0)


def matmul(spec: str, a: jax.Array, b: jax.Array, compute_dtype=None) -> jax.Array:
    """einsum in float32, or with `compute_dtype` (bfloat16) inputs and float32 accumulation."""
    if compute_dtype is None:
        return jnp.einsum(spec, a, b)
    return jnp.einsum(
        spec, a.astype(compute_dtype), b.astype(compute_dtype), preferred_element_type=jnp.float32
    )


def input_gates(x: jax.Array, lengths: jax.Array, w_input: jax.Array, bias: jax.Array) -> jax.Array:
    """x @ W_in + b for every step of both directions at once: (T, 2, B, 4H), time-major for the scan.

    Always float32: XLA:CPU lowers this batched einsum with bfloat16 inputs to a dot it cannot run.
    """
    both = jnp.stack([x, reverse_within_length(x, lengths)])  # (2, B, T, D)
    return jnp.einsum("zbtd,zdg->tzbg", both, w_input) + bias[None, :, None, :]


def gate_scale(hidden: int, dtype=jnp.float32) -> jax.Array:
    """Per-gate-column factors (4H,): 0.5 for the sigmoid gates i, f, o and 1 for the candidate g.

    sigmoid(x) = 0.5 * tanh(x / 2) + 0.5, so with the i/f/o columns of W_in, W_h and the bias
    halved, all four gates are ONE tanh over the contiguous (..., 4H) pre-activation followed by
    one multiply-add. XLA:CPU then vectorises the cell; with separate sigmoids it expands each to
    1 / (1 + exp(-x)) over four slices and emits scalar code (issue 9: ~2x faster recurrence).
    Scaling the weights (never the bundle, see prescale_gates) keeps the model and its file unchanged.
    """
    half = jnp.full((hidden,), 0.5, dtype)
    return jnp.concatenate([half, half, jnp.ones((hidden,), dtype), half])


def recur(
    gates_in: jax.Array, w_hidden: jax.Array, lengths: jax.Array, compute_dtype=None, prescaled: bool = True
) -> jax.Array:
    """The recurrence for both directions in one scan; returns (B, T, 2H) in input order.

    prescaled=True (inference): `gates_in` and `w_hidden` are pre-scaled by gate_scale() and all
    gates are one tanh (see there). prescaled=False (training): the same cell with three sigmoids,
    whose gradients XLA:CPU computes 6-10% faster (benchmarks/cell.py); the two agree to rounding.
    The cell state and gate arithmetic stay float32 whatever `compute_dtype` the matmul uses.
    """
    hidden = w_hidden.shape[1]
    slope = gate_scale(hidden, gates_in.dtype)  # 0.5 where a sigmoid is wanted, 1 for g
    offset = 1.0 - slope  # 0.5 for the sigmoid gates, 0 for g
    if compute_dtype is not None:
        w_hidden = w_hidden.astype(compute_dtype)  # once, not per step

    def activate(z: jax.Array) -> list[jax.Array]:
        if prescaled:
            return jnp.split(jnp.tanh(z) * slope + offset, 4, axis=-1)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        return [jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)]

    def step(carry, gates_t):
        h, c = carry
        i, f, g, o = activate(gates_t + matmul("zbh,zhg->zbg", h, w_hidden, compute_dtype))
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((2, gates_in.shape[2], hidden), gates_in.dtype)
    _, hs = jax.lax.scan(step, (zeros, zeros), gates_in)  # (T, 2, B, H)
    forward = jnp.transpose(hs[:, 0], (1, 0, 2))
    backward = reverse_within_length(jnp.transpose(hs[:, 1], (1, 0, 2)), lengths)
    return jnp.concatenate([forward, backward], axis=-1)


def head_features(x: jax.Array, lengths: jax.Array, pooling: tuple[str, ...] = ()) -> jax.Array:
    """The head's input (B, head_width): outputs at the first and the last real position, then each
    pooled summary over the real positions only, so padding never changes a row's features.
    """
    last = jnp.take_along_axis(x, (lengths - 1)[:, None, None], axis=1)[:, 0]
    features = [x[:, 0], last]
    real = (jnp.arange(x.shape[1])[None, :] < lengths[:, None])[:, :, None]
    for kind in pooling:
        if kind == "max":
            features.append(jnp.max(jnp.where(real, x, -jnp.inf), axis=1))
        else:
            features.append(jnp.sum(jnp.where(real, x, 0.0), axis=1) / lengths[:, None].astype(x.dtype))
    return jnp.concatenate(features, axis=-1)


class BiLSTMLayer(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
        d_in = x.shape[-1]
        h4 = 4 * self.hidden
        w_input = self.param("w_input", nn.initializers.glorot_uniform(batch_axis=(0,)), (2, d_in, h4))
        w_hidden = self.param("w_hidden", nn.initializers.orthogonal(column_axis=-1), (2, self.hidden, h4))
        bias = self.param("bias", _lstm_bias_init, (2, h4))
        return recur(input_gates(x, lengths, w_input, bias), w_hidden, lengths, prescaled=False)


class SentimentBiLSTM(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, ids: jax.Array, lengths: jax.Array, *, train: bool = False) -> jax.Array:
        cfg = self.config
        lengths = jnp.maximum(lengths, 1)
        drop = nn.Dropout(cfg.dropout, deterministic=not train)
        x = nn.Embed(cfg.vocab_size, cfg.embed_dim, name="embedding")(ids)
        for layer in range(cfg.num_layers):
            x = BiLSTMLayer(cfg.hidden, name=f"lstm_{layer}")(drop(x), lengths)
        return nn.Dense(cfg.num_classes, name="head")(drop(head_features(x, lengths, cfg.pooling)))


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


def init_params(config: ModelConfig, seed: int) -> dict:
    dummy = jnp.zeros((1, 4), jnp.int32)
    return SentimentBiLSTM(config).init(jax.random.PRNGKey(seed), dummy, jnp.array([4]))["params"]


@partial(jax.jit, static_argnums=0)
def forward_logits(config: ModelConfig, params: dict, ids: jax.Array, lengths: jax.Array) -> jax.Array:
    """Inference logits; compiled once per (config, batch shape)."""
    return SentimentBiLSTM(config).apply({"params": params}, ids, lengths)


def prescale_gates(params: dict) -> dict:
    """The parameters the tanh cell runs on: every LSTM layer's W_in, W_h and bias times gate_scale().

    Done once when a model is loaded for scoring (scoring.Scorer); the bundle and training keep the
    plain weights. Halving is exact in floating point, so the tanh cell sees the same numbers.
    """
    scaled = dict(params)
    for name, layer in params.items():
        if name.startswith("lstm_"):
            scale = gate_scale(layer["w_hidden"].shape[1], layer["w_hidden"].dtype)
            scaled[name] = {key: value * scale for key, value in layer.items()}
    return scaled


def first_layer_table(params: dict) -> jax.Array:
    """Every vocabulary word's first-layer input gates, (V, 2, 4H): embedding @ W_in + b, once.

    At inference the first layer's input projection is then a row lookup instead of
    a matmul per token, which saves about a ninth of the model's arithmetic. `params` as
    returned by prescale_gates(), so the table is pre-scaled too.
    """
    layer = params["lstm_0"]
    return jnp.einsum("vd,zdg->vzg", params["embedding"]["embedding"], layer["w_input"]) + layer["bias"]


PRECISIONS = ("float32", "bfloat16")


@partial(jax.jit, static_argnums=(0, 5))
def table_forward_logits(
    config: ModelConfig,
    params: dict,
    table: jax.Array,
    ids: jax.Array,
    lengths: jax.Array,
    precision: str = "float32",
) -> jax.Array:
    """forward_logits with the first layer's projection read from first_layer_table(), on
    prescale_gates() parameters (the tanh cell).

    precision "bfloat16": the recurrent matmul (h @ W_h, most of the work) takes bfloat16 inputs and
    accumulates in float32 (opt-in; see README "Precision" for its measured effect). "float32": exact.
    """
    compute = jnp.bfloat16 if precision == "bfloat16" else None
    lengths = jnp.maximum(lengths, 1)
    reversed_ids = reverse_within_length(ids[:, :, None], lengths)[:, :, 0]
    gates = jnp.stack([table[ids, 0], table[reversed_ids, 1]])  # (2, B, T, 4H)
    x = recur(jnp.transpose(gates, (2, 0, 1, 3)), params["lstm_0"]["w_hidden"], lengths, compute)
    for layer in range(1, config.num_layers):
        p = params[f"lstm_{layer}"]
        x = recur(input_gates(x, lengths, p["w_input"], p["bias"]), p["w_hidden"], lengths, compute)
    head = params["head"]
    return head_features(x, lengths, config.pooling) @ head["kernel"] + head["bias"]
