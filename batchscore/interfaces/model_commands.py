"""What `batchscore predict` and `batchscore model` print: scores for a few strings, a bundle's card."""

from __future__ import annotations

from batchscore.model.bundle import Bundle


def predict_texts(texts: list[str | None], bundle: Bundle) -> list[dict]:
    """Scores for a few strings, through the Python API (the same path as `run`)."""
    import pandas as pd  # only `predict` needs it: `run` starts without importing pandas

    from batchscore.interfaces.api import Model

    frame = Model(bundle).predict(texts)
    results = []
    for text, row in zip(texts, frame.itertuples(index=False), strict=True):
        scored = row.error is pd.NA
        results.append(
            {
                "text": text,
                "label": row.label if scored else None,
                "prob_positive": float(row.prob_positive) if scored else None,
                "prob_negative": 1.0 - float(row.prob_positive) if scored else None,  # sums to 1
                "n_tokens": None if pd.isna(row.n_tokens) else int(row.n_tokens),  # none: never tokenized
                "truncated": None if pd.isna(row.truncated) else bool(row.truncated),
                "error": None if scored else row.error,
            }
        )
    return results


def model_card_text(bundle: Bundle) -> str:
    card = bundle.card
    m = bundle.model
    lines = [
        f"model      {bundle.name}",
        f"weights    sha256 {bundle.weights_sha256}",
        f"arch       GloVe {m.embed_dim}d -> BiLSTM {m.num_layers}x{m.hidden} -> "
        f"{'+'.join(('first', 'last', *m.pooling))} ({m.head_width}) "
        f"-> Dense({m.num_classes}); vocab {m.vocab_size:,}",
        f"tokens     max {bundle.max_tokens} (head {bundle.head_tokens} + tail), "
        f"temperature {bundle.temperature:.3f}",
    ]
    for key in ("command", "seed", "epochs_run", "best_epoch", "training_seconds", "machine"):
        if key in card:
            lines.append(f"{key:10s} {card[key]}")
    if "lm_pretraining" in card:
        stage = card["lm_pretraining"]
        losses = " -> ".join(f"{epoch['valid_loss']:.3f}" for epoch in stage["history"])
        lines.append(
            f"pretrain   {stage['epochs']} language-model epochs ({stage['seconds']:.0f} s of "
            f"training_seconds), validation next-token loss {losses}"
        )
    for key in ("train_data", "valid_data", "test_data", "embeddings"):
        if key in card:
            lines.append(f"{key:10s} " + ", ".join(f"{k}={v}" for k, v in card[key].items()))
    for key, name in (("valid_metrics", "validation"), ("test_metrics", "test")):
        metrics = card.get(key) or {}
        metrics = metrics.get("calibrated", metrics)  # validation: after the temperature, as shipped
        if metrics:
            lines.append(f"{name:10s} {_metrics_text(metrics)}")
        lines += [
            f"{'':10s} {band['tokens']} tokens: accuracy {band['accuracy']:.4f} ({band['rows']:,} rows)"
            for band in metrics.get("accuracy_by_length", [])
        ]
    if "build/" in str(card.get("command", "")):
        lines.append(
            f"{'':10s} (build/film-*.parquet: python -m benchmarks.studies.film_split; docs/model-card.md)"
        )
    return "\n".join(lines)


def _metrics_text(metrics: dict) -> str:
    """accuracy 0.9085, ROC-AUC 0.9709, ECE 0.0089, log loss 0.2263 (25,000 rows)."""
    names = (("accuracy", "accuracy"), ("roc_auc", "ROC-AUC"), ("ece", "ECE"), ("log_loss", "log loss"))
    shown = ", ".join(
        f"{label} {metrics[key]:.4f}" for key, label in names if isinstance(metrics.get(key), float | int)
    )
    return shown + (f" ({metrics['rows']:,} rows)" if "rows" in metrics else "")
