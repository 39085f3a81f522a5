"""How a run ends: every exit code a run can get is decided here (0: ok, 6: too many bad rows,
7: bad files skipped, 9: drift with fail_on_drift, or the code of the error that stopped it)."""

from __future__ import annotations

from batchscore.base.errors import BatchscoreError, DriftAlert, ErrorRateExceeded, ExitCode, Interrupted
from batchscore.model.bundle import Bundle
from batchscore.monitoring.drift import compare, should_fail
from batchscore.monitoring.summary import OutputCounts
from batchscore.pipeline.options import RunOptions


def assess_drift(counts: OutputCounts, bundle: Bundle, options: RunOptions) -> dict:
    """The run's rows against the model's reference profile (also for a failed run: what it saw)."""
    return compare(
        counts.profile.to_dict(), bundle.card.get("reference_profile"), options.drift, counts.unprofiled_rows
    )


def complete_run_failure(counts: OutputCounts, drift: dict, options: RunOptions) -> BatchscoreError | None:
    """The error a run that scored every file still fails with, if any."""
    if counts.error_rate > options.max_error_rate:
        return ErrorRateExceeded(
            f"{counts.error_rows:,} of {counts.rows:,} rows ({counts.error_rate:.2%}) could not be "
            f"scored, above --max-error-rate {options.max_error_rate:.2%}; see the 'error' column",
        )
    if should_fail(drift, options.drift):
        return DriftAlert(
            f"drift {drift['status']} (fail_on_drift = {options.drift.fail_on_drift!r}): "
            + "; ".join(drift["reasons"])
            + ". The outputs are complete; review them before use."
        )
    return None


def run_status(counts: OutputCounts, failure: BatchscoreError | None) -> tuple[str, ExitCode]:
    """The summary's status and the process's exit code."""
    if isinstance(failure, Interrupted):
        return "interrupted", ExitCode.INTERRUPTED
    if failure is not None:
        return "failed", ExitCode(failure.exit_code)
    if counts.bad_files:
        return "bad files skipped", ExitCode.BAD_FILES_SKIPPED
    return "ok", ExitCode.OK
