"""What `batchscore train` does: read the data, train, evaluate on test once, write the bundle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from batchscore.model.bundle import Bundle, save_bundle
from batchscore.training.card import headline
from batchscore.training.config import WEIGHTS_DTYPE, TrainConfig, require_pretraining
from batchscore.training.evaluate import evaluate_bundle
from batchscore.training.trainer import TrainResult, train


def run_training(
    *,
    train_path: Path,
    valid_path: Path | None,
    valid_fraction: float,
    test_path: Path | None,
    embeddings: str,
    output: Path,
    checkpoint_dir: Path | None,
    resume: bool,
    text_column: str,
    label_column: str,
    progress: bool | None,
    command: str,
    log: Callable[[str], None],
    lm_data: tuple[str, ...] = (),
    **hyper,
) -> TrainResult:
    """The `batchscore train` job: read data, train, calibrate, write the bundle, report."""
    import sys

    from batchscore.training.datasets import read_labeled, read_unlabeled, split_validation
    from batchscore.training.embeddings import load_word_vectors

    config = TrainConfig(**{**hyper, "init_model": str(hyper.get("init_model") or "")})
    if lm_data:
        require_pretraining(config)  # before anything is read
    data = read_labeled(train_path, text_column, label_column)
    if valid_path is not None:
        train_data, valid_data = data, read_labeled(valid_path, text_column, label_column)
    else:
        train_data, valid_data = split_validation(data, valid_fraction, config.seed)
    train_data.require_both_labels("training")
    valid_data.require_both_labels("validation")
    log(f"training rows {len(train_data)}, validation rows {len(valid_data)}")
    lm_text = read_unlabeled(lm_data, text_column) if lm_data else None
    vectors = load_word_vectors(embeddings)
    checkpoint_dir = checkpoint_dir or output.with_name(output.name + ".checkpoint")
    show = sys.stderr.isatty() if progress is None else progress
    result = train(
        train_data,
        valid_data,
        vectors,
        config,
        checkpoint_dir,
        resume=resume,
        log=log,
        progress=show,
        card_extra={"command": command, "seed": config.seed},
        lm_text=lm_text,
    )
    bundle = result.bundle  # its params are already as_shipped(): what is tested is what ships
    if test_path is not None:
        bundle = with_test_metrics(bundle, read_labeled(test_path, text_column, label_column), log)
    bundle = replace(bundle, name=output.resolve().name)  # its own name in every output it scores
    sha = save_bundle(bundle, output, weights_dtype=WEIGHTS_DTYPE)
    log(f"wrote model bundle {output} (weights sha256 {sha[:12]})")
    return result


def with_test_metrics(bundle: Bundle, test, log: Callable[[str], None]) -> Bundle:
    """The bundle with its test-set metrics in the card (held-out data, measured as shipped)."""
    report = evaluate_bundle(bundle, test)
    log(f"test accuracy {report['accuracy']:.4f}, ECE {report['ece']:.4f} ({len(test)} rows)")
    card = {
        **bundle.card,
        "test_data": {"source": test.source, "rows": len(test), "sha256": test.content_sha256()},
        "test_metrics": {**headline(report), "accuracy_by_length": report["accuracy_by_length"]},
    }
    return replace(bundle, card=card)
