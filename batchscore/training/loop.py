"""The ONE epoch loop of training: shuffled, bucketed batches of one encoded set, a step per batch,
an end-of-epoch hook that validates and checkpoints. Classifier training and language-model
pretraining both run through it, so both resume the same way: epoch e's batch order comes from its
own seeded generator and each step's random key from the step number."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import numpy as np

from batchscore.inference.batching import Batch, BucketSpec, pad_batch, plan_batches
from batchscore.inference.forward import Truncation
from batchscore.io.console import STDERR
from batchscore.text.encoding import Encoded
from batchscore.training.config import TrainState

# one batch: (batch, padded ids, lengths, dropout key, the epoch's generator) -> (mean loss, weight of
# that mean, correct predictions); the step keeps its own parameters and optimiser state
Step = Callable[[Batch, np.ndarray, np.ndarray, jax.Array, np.random.Generator], tuple[float, float, float]]


@dataclass
class EpochTotals:
    loss: float = 0.0  # sum of loss x weight
    weight: float = 0.0  # rows (classifier) or predicted tokens (language model)
    correct: float = 0.0
    seconds: float = 0.0  # of this epoch's steps

    @property
    def mean_loss(self) -> float:
        return self.loss / max(self.weight, 1.0)


def run_epochs(
    state: TrainState,
    epochs: int,
    encoded: Encoded,
    spec: BucketSpec,
    truncation: Truncation,
    epoch_rng: Callable[[int], np.random.Generator],
    base_key: jax.Array,
    step: Step,
    end_epoch: Callable[[int, EpochTotals], None],
    label: str,
    progress: bool,
) -> None:
    """Epochs state.epoch+1 .. `epochs`; `end_epoch(epoch, totals)` records and checkpoints each."""
    for epoch in range(state.epoch, epochs):
        started = time.perf_counter()
        rng = epoch_rng(epoch)
        plan = plan_batches(encoded.n_tokens, truncation.max_tokens, spec, rng=rng)
        totals = EpochTotals()
        bar = _progress(len(plan), f"{label} {epoch + 1}/{epochs}", progress)
        for i, batch in enumerate(plan):
            ids, lengths = pad_batch(
                encoded.ids, encoded.offsets, batch, truncation.max_tokens, truncation.head_tokens
            )
            loss, weight, correct = step(batch, ids, lengths, jax.random.fold_in(base_key, state.step), rng)
            state.step += 1
            totals.loss += loss * weight
            totals.weight += weight
            totals.correct += correct
            if bar is not None:
                bar.update(1)
                if i % 20 == 0:
                    bar.set_postfix(loss=f"{totals.mean_loss:.4f}")
        if bar is not None:
            bar.close()
        totals.seconds = time.perf_counter() - started
        end_epoch(epoch, totals)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, mininterval=1.0, file=STDERR)
