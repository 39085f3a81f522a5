"""Input and score profiles of a run, and their drift from the model's reference profile.

A nightly scorer fails worst when it fails quietly: it keeps giving confident labels to text unlike
its training data (another language, escaped HTML, a new product line). A profile is a few counts and
fixed-bin histograms, added to window by window while scoring (no second pass over the data); the
bundle's card holds the same profile of the model's validation rows, and `compare` turns the two into
a status an operator can act on. Histograms have fixed edges so that profiles of different runs and
dates can be compared and merged bin by bin.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from batchscore.base.settings import DRIFT_LEVELS
from batchscore.model.probabilities import is_positive
from batchscore.text.vocab import UNK_ID

PROB_EDGES = tuple(round(i / 10, 1) for i in range(11))  # 10 bins of prob_positive
LENGTH_EDGES = (1, 11, 21, 51, 101, 201, 301, 501, 1001)  # token-count bins; the last is open (>1000)
LENGTH_CAP = 4096  # token counts are tallied exactly up to here (quantiles), longer ones together
QUANTILES = (0.1, 0.5, 0.9, 0.99)
STATUSES = ("ok", *DRIFT_LEVELS[1:])  # in rising order: ok, then the levels fail_on_drift names
NOT_JUDGED = "not judged"  # fewer rows than min_rows and no other signal raised: never "ok"
REFERENCE_KEYS = ("rows", "unknown_rate", "label_shares", "prob_histogram", "length_histogram")


@dataclass(frozen=True)
class DriftPolicy:
    """Thresholds for the drift status, and whether a run fails on it (README "Drift")."""

    psi_warn: float = 0.1  # population stability index of prob_positive or of length
    psi_alert: float = 0.25
    unknown_ratio_warn: float = 2.0  # unknown-token rate / the reference's
    unknown_ratio_alert: float = 4.0
    label_shift_warn: float = 0.15  # largest change of a label's share, absolute
    label_shift_alert: float = 0.30
    min_rows: int = 200  # below this, PSI and label shares are too noisy to judge
    fail_on_drift: str = "never"  # never | warn | alert: end the run with exit 9 at that status

    def problems(self) -> list[str]:
        """What is wrong with these settings, for the caller to raise as a usage error."""
        found = []
        for name in ("psi", "unknown_ratio", "label_shift"):
            warn, alert = getattr(self, f"{name}_warn"), getattr(self, f"{name}_alert")
            if not (math.isfinite(warn) and math.isfinite(alert) and 0 < warn <= alert):
                found.append(f"drift {name}_warn and {name}_alert must be numbers with 0 < warn <= alert")
        if self.min_rows < 0:
            found.append(f"drift min_rows must be >= 0 (got {self.min_rows})")
        if self.fail_on_drift not in DRIFT_LEVELS:
            found.append(
                f"drift fail_on_drift must be one of {list(DRIFT_LEVELS)} (got {self.fail_on_drift!r})"
            )
        return found

    def thresholds(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "fail_on_drift"}


@dataclass
class Profile:
    """Running counts over the scored rows (rows with an error are not part of it)."""

    labels: tuple[str, str] = ("negative", "positive")
    max_tokens: int = 500
    rows: int = 0
    tokens: int = 0
    unknown_tokens: int = 0
    truncated: int = 0
    positive: int = 0
    length_counts: np.ndarray = field(default_factory=lambda: np.zeros(LENGTH_CAP + 1, np.int64))
    prob_counts: np.ndarray = field(default_factory=lambda: np.zeros(len(PROB_EDGES) - 1, np.int64))

    def add(self, ids: np.ndarray, n_tokens: np.ndarray, prob_positive: np.ndarray) -> None:
        """One window's scored rows: their token ids (all of them, flat), token counts and scores."""
        self.rows += n_tokens.size
        self.tokens += int(ids.size)
        self.unknown_tokens += int(np.count_nonzero(ids == UNK_ID))
        self.truncated += int(np.count_nonzero(n_tokens > self.max_tokens))
        self.positive += int(np.count_nonzero(is_positive(prob_positive)))
        self.length_counts += np.bincount(np.minimum(n_tokens, LENGTH_CAP), minlength=LENGTH_CAP + 1)
        bins = np.clip((np.asarray(prob_positive, np.float64) * 10).astype(np.int64), 0, 9)
        self.prob_counts += np.bincount(bins, minlength=10)

    def to_counts(self) -> dict:
        """The raw counts, as JSON: what an output file and a resume manifest keep, so that a run's
        profile covers rows committed by earlier runs too (merge_counts)."""
        lengths = np.flatnonzero(self.length_counts)
        return {
            "rows": self.rows,
            "tokens": self.tokens,
            "unknown_tokens": self.unknown_tokens,
            "truncated": self.truncated,
            "positive": self.positive,
            "lengths": {str(n): int(self.length_counts[n]) for n in lengths},
            "probs": self.prob_counts.tolist(),
        }

    def merge_counts(self, counts: dict) -> None:
        for key in ("rows", "tokens", "unknown_tokens", "truncated", "positive"):
            setattr(self, key, getattr(self, key) + int(counts[key]))
        for n, count in counts["lengths"].items():
            self.length_counts[min(int(n), LENGTH_CAP)] += int(count)
        self.prob_counts += np.asarray(counts["probs"], np.int64)

    def to_dict(self) -> dict:
        """The JSON form, the same for a run and for the card's reference."""
        rows = self.rows
        cumulative = np.cumsum(self.length_counts)
        quantiles = {
            f"p{round(q * 100)}": int(np.searchsorted(cumulative, q * rows)) if rows else None
            for q in QUANTILES
        }
        bins = np.searchsorted(LENGTH_EDGES, np.arange(LENGTH_CAP + 1), side="right") - 1
        counted = self.length_counts[1:]  # scored rows have at least one token
        length_hist = np.bincount(bins[1:], weights=counted, minlength=len(LENGTH_EDGES)).astype(np.int64)
        negative, positive = self.labels
        return {
            "rows": rows,
            "tokens": self.tokens,
            "unknown_rate": self.unknown_tokens / self.tokens if self.tokens else None,
            "truncated_share": self.truncated / rows if rows else None,
            "length_quantiles": quantiles,
            "length_histogram": {"edges": list(LENGTH_EDGES), "counts": length_hist.tolist()},
            "prob_histogram": {"edges": list(PROB_EDGES), "counts": self.prob_counts.tolist()},
            "label_shares": {
                negative: (rows - self.positive) / rows if rows else None,
                positive: self.positive / rows if rows else None,
            },
        }


def psi(expected: list[int], actual: list[int], floor: float = 1e-4) -> float:
    """Population stability index of two histograms over the same bins: sum (a - e) ln(a / e) over
    the bins' shares, each share floored so that an empty bin is large, not infinite."""
    e = np.maximum(np.asarray(expected, np.float64) / max(sum(expected), 1), floor)
    a = np.maximum(np.asarray(actual, np.float64) / max(sum(actual), 1), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def compare(run: dict, reference: dict | None, policy: DriftPolicy, unprofiled_rows: int = 0) -> dict:
    """The drift block of a run: statistics against the reference, a status, and its reasons.

    `unprofiled_rows`: rows of outputs written before profiles existed (no counts in their metadata);
    they are named, and a run with nothing else to judge is "unavailable", never "ok".
    """
    block = _judge(run, reference, policy)
    if unprofiled_rows:
        block["reasons"].append(
            f"{unprofiled_rows:,} rows are in outputs written before drift profiles and are not judged "
            "(rerun those with --overwrite to include them)"
        )
        if not run["rows"]:
            block["status"] = "unavailable"
    return block


def _judge(run: dict, reference: dict | None, policy: DriftPolicy) -> dict:
    block: dict = {"status": "ok", "reasons": [], "rows": run["rows"], "thresholds": policy.thresholds()}
    if not reference:
        return {**block, "status": "unavailable", "reasons": ["the model card has no reference profile"]}
    if not run["rows"]:
        reason = "no scored rows in finished outputs (rows with an error are not profiled)"
        return {**block, "status": "unavailable", "reasons": [reason]}
    levels: list[str] = []

    def judge(value: float, warn: float, alert: float, what: str) -> None:
        level = "alert" if value >= alert else "warn" if value >= warn else None
        if level:
            levels.append(level)
            block["reasons"].append(f"{what} ({level} at >= {warn if level == 'warn' else alert:g})")

    floor = 1e-3  # an unknown-token rate near 0 in the reference must not make every ratio huge
    ratio = (run["unknown_rate"] or 0.0) / max(reference["unknown_rate"] or 0.0, floor)
    block.update(
        reference={k: reference[k] for k in REFERENCE_KEYS},  # what a report draws the run against
        unknown_rate=run["unknown_rate"],
        reference_unknown_rate=reference["unknown_rate"],
        unknown_rate_ratio=ratio,
        psi_prob_positive=psi(reference["prob_histogram"]["counts"], run["prob_histogram"]["counts"]),
        psi_length=psi(reference["length_histogram"]["counts"], run["length_histogram"]["counts"]),
        label_share_shift=max(
            abs((run["label_shares"].get(name) or 0.0) - (share or 0.0))
            for name, share in reference["label_shares"].items()
        ),
    )
    judge(
        ratio,
        policy.unknown_ratio_warn,
        policy.unknown_ratio_alert,
        f"unknown-token rate {run['unknown_rate']:.1%} is {ratio:.1f}x the reference "
        f"{reference['unknown_rate']:.1%}",
    )
    if run["rows"] < policy.min_rows:
        block["reasons"].append(
            f"only {run['rows']} rows: PSI and label shares not judged (min_rows {policy.min_rows})"
        )
    else:
        judge(
            block["psi_prob_positive"],
            policy.psi_warn,
            policy.psi_alert,
            f"prob_positive PSI {block['psi_prob_positive']:.3f}",
        )
        judge(block["psi_length"], policy.psi_warn, policy.psi_alert, f"length PSI {block['psi_length']:.3f}")
        judge(
            block["label_share_shift"],
            policy.label_shift_warn,
            policy.label_shift_alert,
            f"label shares moved by {block['label_share_shift']:.2f}",
        )
    if levels:
        block["status"] = max(levels, key=STATUSES.index)
    elif run["rows"] < policy.min_rows:  # nothing raised, but PSI and label shares were not looked at
        block["status"] = NOT_JUDGED
    return block


def should_fail(drift: dict, policy: DriftPolicy) -> bool:
    """Whether `fail_on_drift` asks this run to end with exit 9."""
    if policy.fail_on_drift == "never" or drift.get("status") not in STATUSES:
        return False
    return STATUSES.index(drift["status"]) >= STATUSES.index(policy.fail_on_drift)


def summary_line(drift: dict) -> str:
    """One line for the run summary."""
    status = drift.get("status", "unavailable")
    if "psi_prob_positive" not in drift:
        return f"drift {status}: " + "; ".join(drift.get("reasons", []))
    stats = (
        f"PSI prob {drift['psi_prob_positive']:.3f}, length {drift['psi_length']:.3f}; unknown tokens "
        f"{drift['unknown_rate']:.1%} (reference {drift['reference_unknown_rate']:.1%}); "
        f"label shift {drift['label_share_shift']:.2f}"
    )
    reasons = "; ".join(drift["reasons"])
    return f"drift {status.upper() if status != 'ok' else status}: {stats}" + (
        f" | {reasons}" if reasons else ""
    )
