"""Which weights ship: the best epoch or a greedy average of epochs, chosen on validation, rounded
to the bundle's dtype before the temperature is fitted on them."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from batchscore.training.config import WEIGHTS_DTYPE


def greedy_epoch_average(
    history: list[dict],
    best_epoch: int,
    weights_of: Callable[[int], dict],
    valid_accuracy: Callable[[dict], float],
) -> tuple[dict, dict]:
    """A "greedy soup" (Wortsman et al., 2022) of one run's epochs: starting from the best epoch, the
    others in order of validation accuracy (later first on ties) join the uniform average only when
    validation accuracy does not drop. Averaging flattens the late-epoch overfitting a single
    checkpoint carries, and the choice, like every other, is made on the validation split alone.
    """
    accuracy = {r["epoch"]: r["valid_accuracy"] for r in history}
    others = sorted((e for e in accuracy if e != best_epoch), key=lambda e: (-accuracy[e], -e))
    chosen, total = [best_epoch], weights_of(best_epoch)
    average, score = total, accuracy[best_epoch]
    tried = []
    for epoch in others:
        candidate_total = jax.tree_util.tree_map(jnp.add, total, weights_of(epoch))
        candidate = _divided(candidate_total, len(chosen) + 1)
        candidate_score = valid_accuracy(candidate)
        tried.append({"epoch": epoch, "valid_accuracy": candidate_score})
        if candidate_score >= score:
            chosen.append(epoch)
            total, average, score = candidate_total, candidate, candidate_score
    return average, {"epochs": chosen, "valid_accuracy": score, "tried": tried}


def _divided(tree: dict, n: int) -> dict:
    return jax.tree_util.tree_map(lambda t: t / n, tree)


def as_shipped(params: dict) -> dict:
    """Parameters rounded to the bundle's WEIGHTS_DTYPE and back to float32: what a loaded bundle holds."""
    return jax.tree_util.tree_map(lambda a: np.asarray(a, WEIGHTS_DTYPE).astype(np.float32), params)
