"""Language-model pretraining (Dai and Le, 2015): the embedding and LSTM layers learn to predict each
next token, in both reading directions, before the classifier sees a label (model side: pretrain.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pyarrow as pa

from batchscore.inference.batching import BucketSpec, pad_batch, plan_batches
from batchscore.inference.forward import Truncation
from batchscore.model.language_model import (
    LM_DROPOUT,
    LM_NEGATIVES,
    init_lm_head,
    lm_loss,
    lm_parameters,
    sampling_distribution,
)
from batchscore.text.encoding import Encoded
from batchscore.training.checkpoint import Checkpoint
from batchscore.training.config import (
    CLASSIFIER_ONLY_SETTINGS,
    TrainConfig,
    TrainState,
    lm_data_meta,
    require_pretraining,
    require_same_settings,
)
from batchscore.training.datasets import LabeledData, UnlabeledText
from batchscore.training.loop import EpochTotals, run_epochs
from batchscore.training.steps import make_optimizer


def prepare_lm_text(
    lm_text: UnlabeledText,
    train_data: LabeledData,
    valid_data: LabeledData,
    config: TrainConfig,
    log: Callable[[str], None],
) -> tuple[UnlabeledText, dict]:
    """The unlabeled text without the training and validation texts, and the card's account of it:
    files, rows, sha256, what was left out, and the vocabulary rule."""
    require_pretraining(config)
    kept, duplicates = lm_text.without(pa.concat_arrays([train_data.texts, valid_data.texts]))
    log(
        f"language-model text: {len(kept):,} unlabeled rows from {len(lm_text.sources)} file(s) "
        f"besides the {len(train_data):,} training texts ({duplicates:,} left out: the same text is "
        "a training or validation row)"
    )
    return kept, {
        "lm_data": {
            "sources": lm_text.sources,
            "rows": len(kept),
            "left_out_as_training_or_validation_text": duplicates,
            "vocabulary": f"training and unlabeled text, tokens seen at least {config.min_count} times",
        }
    }


def pretrain_language_model(
    params: dict,
    lm_enc: Encoded,
    valid_enc: Encoded,
    config: TrainConfig,
    spec: BucketSpec,
    directory: Path,
    resume: bool,
    log: Callable[[str], None],
    progress: bool,
    lm_record: dict | None = None,
) -> tuple[dict, dict]:
    """config.lm_pretrain_epochs of next-token training of `params`' embedding and LSTM layers on
    `lm_enc` (the training texts, and any unlabeled ones); labels are not read. Checkpointed per epoch
    in `directory`, so a resumed run continues the pretraining, or skips it once it is complete,
    exactly as it would have run. `lm_record` names the unlabeled text a checkpoint must match.
    Returns the pretrained parameters and the card's record of the stage."""
    stage = _LanguageModel(params, lm_enc, valid_enc, config, spec, Checkpoint(directory), log)
    stage.meta.update(lm_data_meta(lm_record))
    if resume and stage.checkpoint.exists():
        stage.restore(lm_record)
    run_epochs(
        stage.state,
        config.lm_pretrain_epochs,
        lm_enc,
        spec,
        stage.truncation,
        lambda epoch: np.random.default_rng([config.seed, epoch, 2]),
        jax.random.PRNGKey(config.seed + 7919),  # not the classifier's dropout stream
        stage.step,
        stage.end_epoch,
        "language model",
        progress,
    )
    record = {
        "epochs": config.lm_pretrain_epochs,
        "sampled_negatives": LM_NEGATIVES,
        "dropout": LM_DROPOUT,
        "history": stage.state.history,
        "seconds": round(stage.state.seconds, 1),
    }
    return stage.lm["model"], record


class _LanguageModel:
    """The stage's parameters (the classifier's embedding and LSTM layers, and a next-token head),
    optimiser and progress; step and end_epoch are run_epochs' hooks."""

    def __init__(
        self, params, lm_enc: Encoded, valid_enc: Encoded, config: TrainConfig, spec, checkpoint, log
    ):
        self.config, self.spec, self.valid_enc, self.checkpoint, self.log = (
            config,
            spec,
            valid_enc,
            checkpoint,
            log,
        )
        self.vocab_size = params["embedding"]["embedding"].shape[0]
        self.unigram = sampling_distribution(lm_enc.ids, self.vocab_size)
        log_expected = jnp.asarray(np.log(np.maximum(LM_NEGATIVES * self.unigram, 1e-30)), jnp.float32)
        batches_per_epoch = len(plan_batches(lm_enc.n_tokens, config.max_tokens, spec))
        optimizer = make_optimizer(config, batches_per_epoch * config.lm_pretrain_epochs)
        hidden = params["lstm_0"]["w_hidden"].shape[1]
        embed_dim = params["embedding"]["embedding"].shape[1]
        head = init_lm_head(hidden, embed_dim, self.unigram, config.seed)
        self.lm = {"model": lm_parameters(params), "head": head}
        self.opt_state = optimizer.init(self.lm)
        self.state = TrainState()
        self.meta = {"train_config": config.to_dict(), "stage": "language model"}
        self.truncation = Truncation(config.max_tokens, config.head_tokens)

        def loss_of(lm_tree, ids, lengths, negatives, key):
            return lm_loss(lm_tree["model"], lm_tree["head"], ids, lengths, negatives, log_expected, key)

        @jax.jit
        def update(lm_tree, opt_state, ids, lengths, negatives, key):
            (loss, count), grads = jax.value_and_grad(loss_of, has_aux=True)(
                lm_tree, ids, lengths, negatives, key
            )
            updates, opt_state = optimizer.update(grads, opt_state, lm_tree)
            return optax.apply_updates(lm_tree, updates), opt_state, loss, count

        self.update, self.evaluate_loss = update, jax.jit(loss_of)

    def restore(self, lm_record: dict | None) -> None:
        trees, self.opt_state, self.state, saved_meta = self.checkpoint.load(self.opt_state)
        require_same_settings(
            saved_meta, self.config, self.checkpoint.directory, lm_record, CLASSIFIER_ONLY_SETTINGS
        )
        self.lm = trees["params"]
        if self.state.epoch < self.config.lm_pretrain_epochs:
            self.log(
                f"resuming language-model pretraining after epoch {self.state.epoch} (step {self.state.step})"
            )

    def step(self, batch, ids, lengths, key, rng) -> tuple[float, float, float]:
        negatives = rng.choice(self.vocab_size, LM_NEGATIVES, p=self.unigram).astype(np.int32)
        self.lm, self.opt_state, loss, count = self.update(
            self.lm, self.opt_state, ids, lengths, negatives, key
        )
        return float(loss), float(count), 0.0

    def valid_loss(self) -> float:
        """Held-out next-token loss, against a fixed draw of negatives, without dropout."""
        rng = np.random.default_rng([self.config.seed, 1])
        negatives = rng.choice(self.vocab_size, LM_NEGATIVES, p=self.unigram).astype(np.int32)
        total = count_sum = 0.0
        for batch in plan_batches(self.valid_enc.n_tokens, self.config.max_tokens, self.spec):
            ids, lengths = pad_batch(
                self.valid_enc.ids, self.valid_enc.offsets, batch, *dataclasses.astuple(self.truncation)
            )
            loss, count = self.evaluate_loss(self.lm, ids, lengths, negatives, None)
            total += float(loss) * float(count)
            count_sum += float(count)
        return total / max(count_sum, 1.0)

    def end_epoch(self, epoch: int, totals: EpochTotals) -> None:
        state = self.state
        state.seconds += totals.seconds
        record = {
            "epoch": epoch + 1,
            "train_loss": totals.mean_loss,
            "valid_loss": self.valid_loss(),
            "seconds": round(totals.seconds, 1),
        }
        state.history.append(record)
        state.epoch = epoch + 1
        self.checkpoint.save(
            {"params": self.lm, "ema": self.lm, "best": self.lm}, self.opt_state, state, self.meta
        )
        self.log(
            f"language model epoch {epoch + 1}: next-token loss {record['train_loss']:.4f} | "
            f"valid {record['valid_loss']:.4f} | {totals.seconds:.0f}s"
        )
