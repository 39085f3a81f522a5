"""The LSTM cell: three sigmoids (the textbook form) vs one tanh over pre-scaled gates.

    python -m benchmarks.cell
Runs the shipped model both ways on the same batches, in one process: the whole forward pass
(tokens/s, ratio, largest probability difference), then a training step (loss and gradients of
every parameter, batch 64). The result decides which form each path uses (model.recur).
"""

from __future__ import annotations

import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from batchscore.model.bilstm import (
    next_layer_inputs,
    prescale_gates,
    project,
    recur,
    recur_to_features,
    reverse_within_length,
)
from batchscore.model.bundle import load_bundle


@partial(jax.jit, static_argnums=(0, 1, 2))
def logits(num_layers: int, pooling: tuple[str, ...], prescaled: bool, params: dict, ids, lengths):
    """The model from embeddings on, with either cell form (weights scaled for the tanh form)."""
    if prescaled:
        params = prescale_gates(params)
    x = params["embedding"]["embedding"][ids.T]
    inputs = (x, reverse_within_length(x, lengths, 0))
    for layer in range(num_layers):
        p = params[f"lstm_{layer}"]
        gates = project(*inputs, p["w_input"], p["bias"])
        if layer == num_layers - 1:
            features = recur_to_features(gates, p["w_hidden"], lengths, pooling, prescaled=prescaled)
        else:
            inputs = next_layer_inputs(recur(gates, p["w_hidden"], prescaled=prescaled), lengths)
    return features @ params["head"]["kernel"] + params["head"]["bias"]


def loss(num_layers: int, pooling: tuple[str, ...], prescaled: bool, params: dict, ids, lengths, labels):
    out = logits(num_layers, pooling, prescaled, params, ids, lengths)
    return optax.softmax_cross_entropy_with_integer_labels(out, labels).mean()


def rate(run, tokens: int, repeats: int = 3) -> float:
    jax.block_until_ready(run())  # compile
    started = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(run())
    return repeats * tokens / (time.perf_counter() - started)


def main() -> None:
    bundle = load_bundle()
    layers, pooling, params = bundle.model.num_layers, bundle.model.pooling, jax.device_put(bundle.params)
    rng = np.random.default_rng(0)
    print(f"{'batch':>10s} {'sigmoid cell':>14s} {'tanh cell':>14s} {'ratio':>6s} {'max diff':>9s}")
    print("forward pass (last column: max |probability difference|)")
    for rows, width in ((512, 128), (256, 256), (128, 500)):
        ids = rng.integers(2, bundle.model.vocab_size, (rows, width)).astype(np.int32)
        lengths = rng.integers(width // 2, width + 1, rows).astype(np.int32)
        runs = {form: partial(logits, layers, pooling, form, params, ids, lengths) for form in (False, True)}
        old, new = (rate(runs[form], rows * width) for form in (False, True))
        p_old, p_new = (jax.nn.softmax(runs[form]() / bundle.temperature) for form in (False, True))
        diff = float(jnp.max(jnp.abs(p_old - p_new)))
        print(f"{rows:>4d} x {width:<3d} {old:>12,.0f}/s {new:>12,.0f}/s {new / old:>5.2f}x {diff:>9.1e}")

    print("training step: loss + gradients of all parameters (last column: max |gradient difference|)")
    step = jax.jit(jax.value_and_grad(loss, argnums=3), static_argnums=(0, 1, 2))
    for rows, width in ((64, 128), (64, 256)):
        ids = rng.integers(2, bundle.model.vocab_size, (rows, width)).astype(np.int32)
        lengths = rng.integers(width // 2, width + 1, rows).astype(np.int32)
        labels = rng.integers(0, 2, rows).astype(np.int32)
        runs = {
            form: partial(step, layers, pooling, form, params, ids, lengths, labels) for form in (False, True)
        }
        old, new = (rate(runs[form], rows * width) for form in (False, True))
        grads = [jax.tree.leaves(runs[form]()[1]) for form in (False, True)]
        diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(*grads, strict=True))
        print(f"{rows:>4d} x {width:<3d} {old:>12,.0f}/s {new:>12,.0f}/s {new / old:>5.2f}x {diff:>9.1e}")


if __name__ == "__main__":
    main()
