"""The LSTM cell: sigmoid gates (the textbook form, the reference) vs one tanh over pre-scaled gates.

    python -m benchmarks.cell
Runs the shipped model's whole forward pass both ways on the same batches, in one process, and
prints tokens/s, the ratio and the largest probability difference; then the same for a training
step (loss and gradients of every parameter, batch 64), which is what an epoch of training is made of.
"""

from __future__ import annotations

import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from batchscore.bundle import load_bundle
from batchscore.model import (
    SentimentBiLSTM,
    first_and_last,
    first_layer_table,
    input_gates,
    reverse_within_length,
    table_forward_logits,
)


def sigmoid_recur(gates_in, w_hidden, lengths):
    """The reference cell: four slices, three sigmoids, unscaled weights."""
    hidden = w_hidden.shape[1]

    def step(carry, gates_t):
        h, c = carry
        i, f, g, o = jnp.split(gates_t + jnp.einsum("zbh,zhg->zbg", h, w_hidden), 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((2, gates_in.shape[2], hidden), gates_in.dtype)
    _, hs = jax.lax.scan(step, (zeros, zeros), gates_in)
    forward = jnp.transpose(hs[:, 0], (1, 0, 2))
    backward = reverse_within_length(jnp.transpose(hs[:, 1], (1, 0, 2)), lengths)
    return jnp.concatenate([forward, backward], axis=-1)


@partial(jax.jit, static_argnums=0)
def reference_logits(num_layers, params, raw_table, ids, lengths):
    """The forward pass as shipped before issue 9: first-layer gate table, sigmoid cell."""
    reversed_ids = reverse_within_length(ids[:, :, None], lengths)[:, :, 0]
    gates = jnp.stack([raw_table[ids, 0], raw_table[reversed_ids, 1]])
    x = sigmoid_recur(jnp.transpose(gates, (2, 0, 1, 3)), params["lstm_0"]["w_hidden"], lengths)
    for layer in range(1, num_layers):
        p = params[f"lstm_{layer}"]
        x = sigmoid_recur(input_gates(x, lengths, p["w_input"], p["bias"]), p["w_hidden"], lengths)
    return first_and_last(x, lengths) @ params["head"]["kernel"] + params["head"]["bias"]


@partial(jax.jit, static_argnums=0)
def reference_train_loss(num_layers, params, ids, lengths, labels):
    """Training-time forward (embedding lookup, no table) with the sigmoid cell, and its loss."""
    x = params["embedding"]["embedding"][ids]
    for layer in range(num_layers):
        p = params[f"lstm_{layer}"]
        x = sigmoid_recur(input_gates(x, lengths, p["w_input"], p["bias"]), p["w_hidden"], lengths)
    logits = first_and_last(x, lengths) @ params["head"]["kernel"] + params["head"]["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train_loss(config, params, ids, lengths, labels):
    logits = SentimentBiLSTM(config).apply({"params": params}, ids, lengths)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def rate(run, tokens: int, repeats: int = 3) -> float:
    run().block_until_ready()  # compile
    started = time.perf_counter()
    for _ in range(repeats):
        run().block_until_ready()
    return repeats * tokens / (time.perf_counter() - started)


def main() -> None:
    bundle = load_bundle()
    config, params = bundle.model, jax.device_put(bundle.params)
    table = jax.jit(first_layer_table)(params)
    layer0 = params["lstm_0"]
    raw_table = (
        jnp.einsum("vd,zdg->vzg", params["embedding"]["embedding"], layer0["w_input"]) + layer0["bias"]
    )
    rng = np.random.default_rng(0)
    print(f"{'batch':>10s} {'sigmoid cell':>14s} {'tanh cell':>14s} {'ratio':>6s} {'max |dp|':>9s}")
    for rows, width in ((512, 128), (256, 256), (128, 500)):
        ids = rng.integers(2, config.vocab_size, (rows, width)).astype(np.int32)
        lengths = rng.integers(width // 2, width + 1, rows).astype(np.int32)
        old = rate(
            lambda ids=ids, lengths=lengths: reference_logits(
                config.num_layers, params, raw_table, ids, lengths
            ),
            rows * width,
        )
        new = rate(
            lambda ids=ids, lengths=lengths: table_forward_logits(config, params, table, ids, lengths),
            rows * width,
        )
        p_old = jax.nn.softmax(
            reference_logits(config.num_layers, params, raw_table, ids, lengths) / bundle.temperature
        )
        p_new = jax.nn.softmax(table_forward_logits(config, params, table, ids, lengths) / bundle.temperature)
        diff = float(jnp.max(jnp.abs(p_old - p_new)))
        print(f"{rows:>4d} x {width:<3d} {old:>12,.0f}/s {new:>12,.0f}/s {new / old:>5.2f}x {diff:>9.1e}")

    print("\ntraining step (loss + gradients of all parameters; last column: max |grad difference|)")
    old_step = jax.jit(jax.value_and_grad(reference_train_loss, argnums=1), static_argnums=0)
    new_step = jax.jit(jax.value_and_grad(train_loss, argnums=1), static_argnums=0)
    for rows, width in ((64, 128), (64, 256)):
        ids = rng.integers(2, config.vocab_size, (rows, width)).astype(np.int32)
        lengths = rng.integers(width // 2, width + 1, rows).astype(np.int32)
        labels = rng.integers(0, 2, rows).astype(np.int32)
        args = (params, ids, lengths, labels)
        old = rate(lambda args=args: old_step(config.num_layers, *args)[0], rows * width)
        new = rate(lambda args=args: new_step(config, *args)[0], rows * width)
        grads_old = old_step(config.num_layers, *args)[1]
        grads_new = new_step(config, *args)[1]
        diff = max(
            float(jnp.max(jnp.abs(a - b)))
            for a, b in zip(jax.tree.leaves(grads_old), jax.tree.leaves(grads_new), strict=True)
        )
        print(f"{rows:>4d} x {width:<3d} {old:>12,.0f}/s {new:>12,.0f}/s {new / old:>5.2f}x {diff:>9.1e}")


if __name__ == "__main__":
    main()
