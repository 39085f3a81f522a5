"""The CPU scoring pass: the BiLSTM classifier's logits for one device's rows, in plain JAX.

Built for what XLA:CPU does well and badly (docs/dev/performance-log.md has the profiles):
- **One matmul per step and direction, nothing outside the loop.** Each step multiplies
  [input; h] by the stacked [W_in; W_h], (2, B, D + H) x (2, D + H, 4H): in cache, at nearly the dense
  matmul rate, where a separate (T*B, D) x (D, 4H) projection ran slower and stored its (T, B, 4H)
  gates. The first layer's input is the embedding row itself (50 floats, not a 1,600-byte row of a
  190 MB pre-projected table, whose per-step gather cost more than the matmul it saved).
- **Both directions in natural time order.** At step s the forward direction reads position s and the
  backward direction position n - 1 - s, where n is this batch's longest row. The backward state is
  held at exactly zero until its row's last token, so a row starts from zero state at its own end
  whatever the batch. Nothing is reversed, gathered or concatenated outside the loop, and layer 2
  reads [forward; backward] at the same position from one (T, B, 2H) buffer.
- **The loop runs n steps, not the padded width**: the width only bounds the arrays.
- The last layer's outputs are never stored: the head's features are gathered as it runs.

Row independence (docs/determinism.md): every product's rows are the batch's rows (a multiple of the
48-row quantum per device), state held at zero is exactly zero, and features take only real positions,
so a row's logits do not depend on its batch, its width or n.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from batchscore.model.bilstm import ModelConfig, cell_gates, prescale_gates, row_wise_head

Weights = dict  # what scoring_weights() returns
Inputs = Callable[[jax.Array, jax.Array], jax.Array]  # (step, backward position) -> (2, B, D) inputs
Collect = Callable[[jax.Array, jax.Array, jax.Array, Any], Any]  # (positions, h, lengths, kept) -> kept

# Which arithmetic scored an output (its fingerprint carries it): bumped by any change that moves a
# score's bits, so that an output begun by another revision is scored again, not resumed.
ARITHMETIC_REVISION = "2"


@jax.jit
def scoring_weights(params: dict) -> Weights:
    """The parameters the pass runs on, made once per model: gates pre-scaled for the one-tanh cell
    (bilstm.gate_scale; exact) and each layer's W_in stacked over W_h, (2, D + H, 4H)."""
    scaled = prescale_gates(params)
    layers = []
    for index in range(sum(name.startswith("lstm_") for name in scaled)):
        layer = scaled[f"lstm_{index}"]
        stacked = jnp.concatenate([layer["w_input"], layer["w_hidden"]], axis=1)
        layers.append({"w": stacked, "bias": layer["bias"][:, None, :]})
    return {"embedding": scaled["embedding"]["embedding"], "layers": layers, "head": scaled["head"]}


def scoring_logits(
    config: ModelConfig, weights: Weights, ids: jax.Array, lengths: jax.Array, precision: str = "float32"
) -> jax.Array:
    """Logits (B, classes) of (B, T) token ids with their lengths (0 for padding rows).

    precision "bfloat16": the step matmul takes bfloat16 inputs and accumulates in float32 (opt-in);
    the cell state and gates stay float32.
    """
    compute = jnp.bfloat16 if precision == "bfloat16" else None
    lengths = jnp.maximum(lengths, 1)
    steps = jnp.max(lengths)
    by_step = jnp.asarray(ids).T
    embedding = weights["embedding"]

    def first_inputs(s: jax.Array, back: jax.Array) -> jax.Array:
        return jnp.stack([embedding[by_step[s]], embedding[by_step[back]]])

    inputs: Inputs = first_inputs
    *lower, last = weights["layers"]
    for layer in lower:
        buffer = jnp.zeros((ids.shape[1], ids.shape[0], 2 * config.hidden), jnp.float32)
        outputs = _run_layer(layer, inputs, lengths, steps, _store_outputs, buffer, compute)
        inputs = _reader(outputs)
    features = _run_layer(
        last, inputs, lengths, steps, _collect_features, _no_features(config, ids.shape[0]), compute
    )
    return row_wise_head(_head_input(features, lengths, config.pooling), weights["head"])


def _reader(outputs: jax.Array) -> Inputs:
    """The next layer's inputs at step s: [forward; backward] outputs at s and at n - 1 - s."""

    def read(s: jax.Array, back: jax.Array) -> jax.Array:
        return jnp.stack([outputs[s], outputs[back]])

    return read


def _run_layer(
    layer: dict,
    inputs: Inputs,
    lengths: jax.Array,
    steps: jax.Array,
    collect: Collect,
    state: Any,
    compute: Any,
) -> Any:
    """One bidirectional layer over `steps` steps. `collect(positions, h, lengths, state)` keeps what is
    wanted of each step's (2, B, H) outputs; `positions` (2, 1, 1) is where each direction is."""
    w = layer["w"] if compute is None else layer["w"].astype(compute)
    hidden = w.shape[2] // 4
    backward = (jnp.arange(2) == 1)[:, None, None]
    row_lengths = lengths[None, :, None]
    zeros = jnp.zeros((2, lengths.shape[0], hidden), jnp.float32)

    def body(s, carry):
        h, c, kept = carry
        back = steps - 1 - s
        x = jnp.concatenate([inputs(s, back), h], axis=-1)
        if compute is not None:
            x = x.astype(compute)
        z = jnp.einsum("zbk,zkg->zbg", x, w, preferred_element_type=jnp.float32) + layer["bias"]
        i, f, g, o = cell_gates(z, prescaled=True)  # one tanh: the weights are pre-scaled
        positions = jnp.where(backward, back, s)
        # the backward state stays exactly zero until the step at its row's last token
        c = jnp.where(positions < row_lengths, f * c + i * g, 0.0)
        h = o * jnp.tanh(c)
        return h, c, collect(positions, h, row_lengths, kept)

    return jax.lax.fori_loop(0, steps, body, (zeros, zeros, state))[2]


def _store_outputs(
    positions: jax.Array, h: jax.Array, row_lengths: jax.Array, outputs: jax.Array
) -> jax.Array:
    """Write each direction's output at its own position of the (T, B, 2H) buffer."""
    hidden = h.shape[-1]
    forward = jax.lax.dynamic_update_slice(outputs, h[0][None], (positions[0, 0, 0], 0, 0))
    return jax.lax.dynamic_update_slice(forward, h[1][None], (positions[1, 0, 0], 0, hidden))


def _no_features(config: ModelConfig, rows: int) -> tuple[jax.Array, ...]:
    zeros = jnp.zeros((2, rows, config.hidden), jnp.float32)
    return zeros, zeros, jnp.full_like(zeros, -jnp.inf), zeros


def _collect_features(
    positions: jax.Array, h: jax.Array, row_lengths: jax.Array, kept: tuple
) -> tuple[jax.Array, ...]:
    """Per direction: the output at position 0, at the row's last position, and the max and the sum
    over its real positions (the forward direction runs on past a row's end; those steps never count)."""
    first, last, maximum, total = kept
    real = positions < row_lengths
    return (
        jnp.where(positions == 0, h, first),
        jnp.where(positions == row_lengths - 1, h, last),
        jnp.where(real, jnp.maximum(maximum, h), maximum),
        total + jnp.where(real, h, 0.0),
    )


def _head_input(kept: tuple, lengths: jax.Array, pooling: tuple[str, ...]) -> jax.Array:
    """(B, head_width): first, last, then `pooling`'s summaries, each [forward; backward]."""
    first, last, maximum, total = kept

    def both(x: jax.Array) -> jax.Array:
        return jnp.concatenate([x[0], x[1]], axis=-1)

    pooled = {"max": both(maximum), "mean": both(total) / lengths[:, None].astype(total.dtype)}
    return jnp.concatenate([both(first), both(last), *(pooled[kind] for kind in pooling)], axis=-1)
