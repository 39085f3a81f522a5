"""How a run that scored its files ends: every exit code a finished run can get is decided here
(6: too many bad rows, 9: drift with fail_on_drift, 7: bad files skipped, 0: ok)."""

from __future__ import annotations

from batchscore.bundle import Bundle
from batchscore.drift import compare, should_fail
from batchscore.errors import DriftAlert, ErrorRateExceeded
from batchscore.report import RunSummary
from batchscore.run.options import RunOptions

BAD_FILES_SKIPPED = 7


def assess_drift(summary: RunSummary, bundle: Bundle, options: RunOptions) -> None:
    """The run's rows against the model's reference profile (also for a failed run: what it saw)."""
    summary.drift = compare(
        summary.profile.to_dict(),
        bundle.card.get("reference_profile"),
        options.drift,
        summary.unprofiled_rows,
    )


def judge(summary: RunSummary, options: RunOptions) -> None:
    """Raise the error a complete run still fails with, or set the summary's status and exit code."""
    if summary.error_rate > options.max_error_rate:
        raise ErrorRateExceeded(
            f"{summary.error_rows:,} of {summary.rows:,} rows ({summary.error_rate:.2%}) could not be "
            f"scored, above --max-error-rate {options.max_error_rate:.2%}; see the 'error' column",
        )
    if should_fail(summary.drift, options.drift):
        raise DriftAlert(
            f"drift {summary.drift['status']} (fail_on_drift = {options.drift.fail_on_drift!r}): "
            + "; ".join(summary.drift["reasons"])
            + ". The outputs are complete; review them before use."
        )
    if summary.bad_files:
        summary.status, summary.exit_code = "bad files skipped", BAD_FILES_SKIPPED
