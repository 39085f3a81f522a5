"""The model card a trained bundle carries: data and embeddings with their sha256, settings, every
epoch, the choices made on validation, the metrics, and the drift reference profile."""

from __future__ import annotations

import os
import platform
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np

from batchscore.base.version import __version__
from batchscore.monitoring.drift import Profile
from batchscore.text.encoding import Encoded
from batchscore.training.config import TrainConfig, TrainState
from batchscore.training.datasets import LabeledData
from batchscore.training.embeddings import WordVectors


def model_card(
    config: TrainConfig,
    train_data: LabeledData,
    valid_data: LabeledData,
    vectors: WordVectors,
    coverage: float,
    state: TrainState,
    reports: tuple[dict, dict],
    temperature: float,
    reference: dict,
    initialized_from: dict | None = None,
    lm_record: dict | None = None,
    averaged: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """`reports`: the validation metrics before and after the temperature."""
    before, after = reports
    return {
        "train_data": _data_record(train_data),
        "valid_data": _data_record(valid_data),
        "embeddings": {
            "source": vectors.source,
            "dim": vectors.dim,
            "vocab_coverage_of_train_tokens": coverage,
        },
        "train_config": config.to_dict(),
        **({"initialized_from": initialized_from} if initialized_from else {}),
        **({"lm_pretraining": lm_record} if lm_record else {}),
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        **({"averaged_epochs": averaged} if averaged else {}),
        "history": state.history,
        "training_seconds": round(state.seconds + (lm_record["seconds"] if lm_record else 0.0), 1),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, {jax.default_backend()}",
        "versions": {"batchscore": __version__, "jax": jax.__version__, "python": platform.python_version()},
        "valid_metrics": {"uncalibrated": headline(before), "calibrated": headline(after)},
        "temperature": temperature,
        "reference_profile": reference,
        **(extra or {}),
    }


def _data_record(data: LabeledData) -> dict:
    return {"source": data.source, "rows": len(data), "sha256": data.content_sha256()}


def headline(report: dict) -> dict:
    return {k: report[k] for k in ("rows", "accuracy", "roc_auc", "ece", "log_loss")}


def reference_profile(
    encoded: Encoded, prob_positive: np.ndarray, labels: tuple[str, str], max_tokens: int
) -> dict:
    """The card's reference for drift statistics (monitoring/drift.py): the validation rows as the
    shipped model scores them, in the same form as every run's profile."""
    profile = Profile(labels, max_tokens)
    scored = encoded.n_tokens > 0
    profile.add(encoded.ids, encoded.n_tokens[scored], prob_positive[scored])
    return {**profile.to_dict(), "source": "validation split"}


def add_reference_profile(
    model_dir: Path,
    train_path: Path,
    valid_path: Path | None,
    valid_fraction: float,
    text_column: str,
    label_column: str,
) -> dict:
    """Give a bundle trained before drift profiles existed its reference, from its own validation
    rows: the split is redone as training did it (the card's seed) and must hash to the card's
    valid_data sha256, so the reference cannot silently come from other data."""
    from batchscore.model.bundle import load_bundle, save_config
    from batchscore.training.datasets import DataError, read_labeled, split_validation
    from batchscore.training.evaluate import bundle_probabilities

    bundle = load_bundle(model_dir)
    if valid_path is not None:
        valid = read_labeled(valid_path, text_column, label_column)
    else:
        seed = bundle.card.get("train_config", {}).get("seed", 0)
        valid = split_validation(read_labeled(train_path, text_column, label_column), valid_fraction, seed)[1]
    expected = bundle.card.get("valid_data", {}).get("sha256")
    if expected is not None and valid.content_sha256() != expected:
        raise DataError(
            f"{valid.source}: these validation rows (sha256 {valid.content_sha256()[:12]}) are not the ones "
            f"{model_dir} was trained with (card: {expected[:12]}); pass the training data and "
            "--valid-fraction that training used"
        )
    encoded, probs = bundle_probabilities(bundle, valid.texts)
    profile = reference_profile(encoded, probs, bundle.labels, bundle.max_tokens)
    save_config(replace(bundle, card={**bundle.card, "reference_profile": profile}), model_dir)
    return profile
