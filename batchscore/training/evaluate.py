"""Classification metrics and probability calibration (temperature scaling)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from batchscore.base.errors import UsageError
from batchscore.inference.batching import BucketSpec
from batchscore.inference.forward import Scorer, Truncation
from batchscore.model.bundle import Bundle
from batchscore.model.probabilities import is_positive, softmax
from batchscore.text.encoding import Encoded, encode
from batchscore.text.validation import EMPTY_TEXT
from batchscore.training.datasets import DataError, LabeledData

ECE_BINS = 15

REPORT_SCHEMA_VERSION = 1  # of `evaluate --json`: batchscore/schemas/evaluate-report.schema.json


def expected_calibration_error(prob_positive: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over equal-width bins of the predicted class's confidence."""
    predicted = is_positive(prob_positive).astype(np.int8)
    confidence = np.where(predicted == 1, prob_positive, 1.0 - prob_positive)
    correct = predicted == labels
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve via the rank-sum statistic (ties get average ranks); None when the
    rows hold one label only (undefined; None is JSON's null, where NaN breaks strict parsers)."""
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, np.float64)
    sorted_scores = scores[order]
    # average ranks over runs of equal scores
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [scores.size]])
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_report(
    prob_positive: np.ndarray,
    labels: np.ndarray,
    n_tokens: np.ndarray | None = None,
    length_edges: tuple[int, ...] = (1, 21, 101, 501),
    label_names: tuple[str, str] = ("negative", "positive"),
) -> dict:
    labels = np.asarray(labels).astype(np.int8)
    predicted = is_positive(prob_positive).astype(np.int8)
    confusion = [[int(((labels == t) & (predicted == p)).sum()) for p in (0, 1)] for t in (0, 1)]
    per_class = {}
    for cls, name in enumerate(label_names):
        tp = confusion[cls][cls]
        predicted_n = confusion[0][cls] + confusion[1][cls]
        actual_n = sum(confusion[cls])
        precision = tp / predicted_n if predicted_n else 0.0
        recall = tp / actual_n if actual_n else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": actual_n}
    report = {
        "rows": int(labels.size),
        "accuracy": float((predicted == labels).mean()),
        "per_class": per_class,
        "roc_auc": roc_auc(prob_positive, labels),
        "ece": expected_calibration_error(prob_positive, labels),
        "log_loss": log_loss(prob_positive, labels),
        "confusion_matrix": {"rows_true_cols_pred": confusion, "labels": list(label_names)},
    }
    if n_tokens is not None:
        report["accuracy_by_length"] = _accuracy_by_length(predicted == labels, n_tokens, length_edges)
    return report


def _accuracy_by_length(correct: np.ndarray, n_tokens: np.ndarray, edges: tuple[int, ...]) -> list[dict]:
    """Accuracy per band of token counts before truncation: one-sentence reviews (1-20) behave
    differently from IMDb-length ones, and an average over all rows would hide it."""
    out = []
    lower = 0
    for upper in (*edges, None):
        mask = n_tokens >= lower if upper is None else (n_tokens >= lower) & (n_tokens < upper)
        name = f">{lower - 1}" if upper is None else f"{lower}-{upper - 1}"
        if mask.any():
            out.append({"tokens": name, "rows": int(mask.sum()), "accuracy": float(correct[mask].mean())})
        lower = upper if upper is not None else lower
    return out


def paired_comparison(prob_positive: np.ndarray, other_prob_positive: np.ndarray, labels: np.ndarray) -> dict:
    """Two models on the same rows. Only the rows exactly one of them gets right carry evidence
    about which is better, so the test is McNemar's (exact binomial on those rows) and the interval
    is the paired one: far tighter than comparing two accuracies as if from separate samples."""
    positive = np.asarray(labels) == 1
    right = is_positive(prob_positive) == positive
    other_right = is_positive(other_prob_positive) == positive
    rows = int(positive.size)
    only_this = int((right & ~other_right).sum())
    only_other = int((other_right & ~right).sum())
    difference = (only_this - only_other) / rows if rows else float("nan")
    spread = math.sqrt(max((only_this + only_other) / rows - difference**2, 0.0) / rows) if rows else 0.0
    return {
        "rows": rows,
        "accuracy": float(right.mean()) if rows else float("nan"),
        "other_accuracy": float(other_right.mean()) if rows else float("nan"),
        "difference": difference,
        "difference_ci95": [difference - 1.96 * spread, difference + 1.96 * spread],
        "only_this_right": only_this,
        "only_other_right": only_other,
        "mcnemar_p": _two_sided_sign_test(only_this, only_other),
    }


def _two_sided_sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial test of wins vs losses at p = 1/2 (integer arithmetic: exact for any n)."""
    n = wins + losses
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1))
    return min(1.0, 2 * tail / 2**n)


def format_comparison(comparison: dict, name: str, other_name: str) -> str:
    c = comparison
    low, high = c["difference_ci95"]
    lines = [f"paired comparison on {c['rows']:,} rows"]
    for label, accuracy, only in (
        (name, c["accuracy"], c["only_this_right"]),
        (other_name, c["other_accuracy"], c["only_other_right"]),
    ):
        lines.append(f"  {label}: accuracy {accuracy:.4f}, alone right on {only:,} rows")
    lines.append(
        f"  difference {c['difference']:+.4f} (95% interval {low:+.4f} to {high:+.4f}), "
        f"McNemar exact p = {c['mcnemar_p']:.3g}"
    )
    return "\n".join(lines)


def log_loss(prob_positive: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(np.where(labels == 1, prob_positive, 1.0 - prob_positive), 1e-12, 1.0)
    return float(-np.log(p).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The softmax temperature minimising validation log loss (golden-section on log T)."""
    labels = np.asarray(labels).astype(np.int64)

    def nll(log_t: float) -> float:
        probs = softmax(logits, float(np.exp(log_t)))
        return float(-np.log(np.clip(probs[np.arange(labels.size), labels], 1e-12, 1.0)).mean())

    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return float(np.exp((lo + hi) / 2))


def _fixed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_report(report: dict) -> str:
    """A human table of classification_report's output."""
    lines = [
        f"rows {report['rows']:,}   accuracy {report['accuracy']:.4f}   "
        f"ROC-AUC {_fixed(report['roc_auc'])}   ECE {report['ece']:.4f}   log loss {report['log_loss']:.4f}",
        "",
        f"{'class':10s} {'precision':>9s} {'recall':>9s} {'f1':>9s} {'support':>9s}",
    ]
    for name, m in report["per_class"].items():
        lines.append(f"{name:10s} {m['precision']:9.4f} {m['recall']:9.4f} {m['f1']:9.4f} {m['support']:9d}")
    for reason, count in (report.get("unscored_rows") or {}).items():
        lines.append(f"(not counted: {count:,} row(s) with {reason}, which batchscore run does not score)")
    cm = report["confusion_matrix"]
    names = cm["labels"]
    lines += [
        "",
        "confusion (rows true, cols predicted)",
        f"{'':10s} " + " ".join(f"{n:>10s}" for n in names),
    ]
    for name, row in zip(names, cm["rows_true_cols_pred"], strict=True):
        lines.append(f"{name:10s} " + " ".join(f"{v:10d}" for v in row))
    if "accuracy_by_length" in report:
        lines += ["", "accuracy by length (tokens)"]
        lines += [
            f"  {b['tokens']:>9s}  rows {b['rows']:6d}  accuracy {b['accuracy']:.4f}"
            for b in report["accuracy_by_length"]
        ]
    return "\n".join(lines)


def bundle_probabilities(
    bundle: Bundle, texts: pa.Array, spec: BucketSpec | None = None
) -> tuple[Encoded, np.ndarray]:
    """The encoded texts and prob_positive as the bundle scores them (its temperature applied)."""
    encoded = encode(texts, bundle.vocab, bundle.tokenizer)
    scorer = Scorer(bundle.model, bundle.params, Truncation(bundle.max_tokens, bundle.head_tokens), spec)
    return encoded, softmax(scorer.logits(encoded), bundle.temperature)[:, 1]


def evaluate_bundle(
    bundle: Bundle, data: LabeledData, spec: BucketSpec | None = None, against: Bundle | None = None
) -> dict:
    """Full metrics of a bundle on labeled data, with the bundle's temperature applied; with
    `against`, also the paired comparison with that bundle on the same rows (key "comparison")."""
    encoded, probs = bundle_probabilities(bundle, data.texts, spec)
    scored = encoded.n_tokens > 0  # what `run` scores: a text with no tokens is its "empty text" error
    if not scored.any():
        raise DataError(f"{data.source}: no row has any text to score (every text is empty)")
    labels = data.labels[scored]
    report = classification_report(probs[scored], labels, encoded.n_tokens[scored], label_names=bundle.labels)
    report["unscored_rows"] = {EMPTY_TEXT: int((~scored).sum())} if not scored.all() else {}
    if against is not None:
        if against.labels != bundle.labels:
            raise UsageError(f"cannot compare models with labels {bundle.labels} and {against.labels}")
        _, other_probs = bundle_probabilities(against, data.texts, spec)
        report["comparison"] = paired_comparison(probs[scored], other_probs[scored], labels)
    return report
