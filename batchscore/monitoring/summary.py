"""The end-of-run summary: what an operator reads on stderr and a scheduler reads as JSON."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from batchscore.base.errors import BatchscoreError, ExitCode, Interrupted
from batchscore.io.console import printable
from batchscore.monitoring.drift import Profile, summary_line

STAGES = ("read", "tokenize", "forward", "write")
SUMMARY_SCHEMA_VERSION = 1  # of the JSON to_dict() gives: batchscore/schemas/run-summary.schema.json


class ProgressListener:
    """Told about a scoring job's progress; this base class ignores it (quiet runs, tests)."""

    def planned(self, files: int, rows: int | None) -> None:
        """Before scoring: the number of files and, when every input's row count is known, of rows."""

    def rows(self, n: int) -> None:
        """n more rows are committed (or were already committed by an earlier run)."""

    def file_done(self) -> None:
        """One more output file is complete."""


# the first line of a summary that did not end "ok", by status
_STATUS_LINES = {
    "bad files skipped": "run finished, bad files skipped",
    "failed": "run failed",
    "interrupted": "run interrupted",
}


@dataclass
class OutputCounts:
    """What the run's outputs hold, counted by the one sink that writes them, as it writes them."""

    files_scored: int = 0
    files_skipped_done: int = 0  # already complete (resume)
    bad_files: list[str] = field(default_factory=list)  # "path: reason" (with --skip-bad-files)
    bad_file_outputs: list[str] = field(default_factory=list)  # their outputs: kept as they were
    rows: int = 0  # every row of every output, committed by this run or an earlier one
    rows_scored_now: int = 0  # scored by this run: what throughput is computed from
    tokens_now: int = 0
    error_rows: int = 0
    tokens: int = 0
    truncated_rows: int = 0
    labels: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    prob_positive_sum: float = 0.0
    renamed_columns: dict[str, str] = field(default_factory=dict)  # input name -> output name
    replaced_utf8: Counter = field(default_factory=Counter)  # column -> values with invalid bytes replaced
    empty_files: int = 0  # inputs with a header and no rows (scored to zero-row outputs)
    outputs: list[str] = field(default_factory=list)
    output_run_ids: set = field(default_factory=set)  # the runs that started the outputs counted
    profile: Profile | None = None  # of every row of the outputs (monitoring/drift.py), as `rows`
    unprofiled_rows: int = 0  # rows of outputs written before profiles existed: not in the profile

    COLUMNS: ClassVar[tuple[str, ...]] = ("label", "prob_positive", "n_tokens", "truncated", "error")  # read

    def add_rows(self, table: pa.Table) -> None:
        """Count a scored table (fresh, or an output already complete from an earlier run)."""
        self.rows += table.num_rows
        labels = pc.value_counts(table.column("label").combine_chunks())
        for item in labels.to_pylist():
            if item["values"] is not None:
                self.labels[item["values"]] += item["counts"]
        errors = pc.value_counts(table.column("error").combine_chunks())
        for item in errors.to_pylist():
            if item["values"] is not None:
                self.errors[item["values"]] += item["counts"]
                self.error_rows += item["counts"]
        self.tokens += pc.sum(table.column("n_tokens")).as_py() or 0
        self.truncated_rows += pc.sum(table.column("truncated").cast(pa.int64())).as_py() or 0
        self.prob_positive_sum += pc.sum(table.column("prob_positive").cast(pa.float64())).as_py() or 0.0

    @property
    def error_rate(self) -> float:
        return self.error_rows / self.rows if self.rows else 0.0


@dataclass
class RunSummary(OutputCounts):
    """A finished (or failed) run, made once from what the run's parts returned; callers that add to
    it (a job) make a new one (`dataclasses.replace`, `failed_with`)."""

    status: str = "ok"  # ok | bad files skipped | failed | interrupted
    exit_code: int = ExitCode.OK
    error: str | None = None  # the failure's message
    failure: BatchscoreError | None = field(default=None, compare=False, repr=False)  # the error itself
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    seconds: float = 0.0
    stale_outputs_removed: list[str] = field(default_factory=list)  # jobs: outputs whose input is gone
    input_types: dict = field(default_factory=dict)  # the run's type per input column (a job keeps its first)
    delta: dict | None = None  # a Delta job's commit: table_version, committed_by_this_run
    model: dict = field(default_factory=dict)  # name, bundle (model_sha256) and weights sha256
    run: dict = field(default_factory=dict)  # this run's run_id and start time (scored_at)
    compute: str = ""  # device, CPU features and matmul precision: which path ran
    drift: dict | None = None  # drift.compare() of the profile with the model's reference

    @classmethod
    def of(cls, counts: OutputCounts, **fields) -> RunSummary:
        """The summary of `counts` and the run's other figures (`fields`)."""
        return cls(**{f.name: getattr(counts, f.name) for f in dataclasses.fields(OutputCounts)}, **fields)

    def failed_with(self, err: BatchscoreError) -> RunSummary:
        """This summary, ended by `err`: interrupted (130) or failed, with its exit code and message."""
        status = "interrupted" if isinstance(err, Interrupted) else "failed"
        return dataclasses.replace(self, status=status, exit_code=err.exit_code, error=str(err), failure=err)

    @property
    def did_work(self) -> bool:
        """Whether anything was scored, committed, found complete or skipped: worth a summary."""
        return bool(self.files_scored or self.files_skipped_done or self.bad_files or self.rows_scored_now)

    def to_dict(self) -> dict:
        scored = self.rows - self.error_rows
        return {
            "schema_version": SUMMARY_SCHEMA_VERSION,
            "run_id": self.run.get("run_id"),
            "started_at": self.run.get("scored_at"),
            # outputs counted here that an earlier run started (resumed, or already complete)
            "earlier_run_ids": sorted(self.output_run_ids - {self.run.get("run_id")}),
            "status": self.status,
            "exit_code": self.exit_code,
            "error": self.error,
            "files_scored": self.files_scored,
            "files_already_done": self.files_skipped_done,
            "bad_files": self.bad_files,
            "rows": self.rows,
            "rows_scored_this_run": self.rows_scored_now,
            "error_rows": self.error_rows,
            "error_rate": self.error_rate,
            "errors": dict(self.errors),
            "labels": dict(self.labels),
            "mean_prob_positive": self.prob_positive_sum / scored if scored else None,
            "tokens": self.tokens,
            "truncated_rows": self.truncated_rows,
            "seconds": round(self.seconds, 3),
            "rows_per_second": self.rows_scored_now / self.seconds if self.seconds else None,
            "tokens_per_second": self.tokens_now / self.seconds if self.seconds else None,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "outputs": self.outputs,
            "model": self.model,
            "compute": self.compute,
            "empty_files": self.empty_files,
            "stale_outputs_removed": self.stale_outputs_removed,
            "renamed_columns": self.renamed_columns,
            "replaced_invalid_utf8": dict(self.replaced_utf8),
            "profile": self.profile.to_dict() if self.profile is not None else None,
            "drift": self.drift,
        }

    def _rows_line(self, rate: str) -> str:
        """Rows of finished outputs, and (on a stop) the rows committed in parts of unfinished ones."""
        if self.status == "ok":
            if not self.seconds:
                return f"  rows {self.rows:,}"
            return (
                f"  rows {self.rows:,} ({self.rows_scored_now:,} scored now, in {self.seconds:.1f}s: {rate})"
            )
        line = f"  rows {self.rows:,} in finished outputs"
        if self.rows_scored_now:
            line += f"; {self.rows_scored_now:,} scored and committed by this run in {self.seconds:.1f}s"
            if self.status in ("failed", "interrupted"):  # an unfinished output: its work is not lost
                line += " (kept: resuming continues after them)"
        return line

    def format(self) -> str:
        """The summary as text, one line per entry (foreign text in an entry cannot break it)."""
        return "\n".join(printable(line) for line in self.lines())

    def lines(self) -> list[str]:
        """The summary's lines, as an operator reads them after a run."""
        d = self.to_dict()
        rate = (
            f"{d['rows_per_second']:,.0f} rows/s, {d['tokens_per_second']:,.0f} tokens/s"
            if self.seconds
            else ""
        )
        lines = (
            []
            if self.status == "ok"
            else [
                f"batchscore: {_STATUS_LINES.get(self.status, 'run ' + self.status)} (exit {self.exit_code})"
            ]
        )
        lines += [
            f"batchscore: {self.files_scored} file(s) scored"
            + (f", {self.files_skipped_done} already complete" if self.files_skipped_done else "")
            + (f", {len(self.bad_files)} bad file(s) skipped" if self.bad_files else ""),
            self._rows_line(rate),
            "  labels "
            + (", ".join(f"{k} {v:,}" for k, v in sorted(self.labels.items())) or "none")
            + (" (finished outputs only)" if self.status != "ok" and self.labels else ""),
            f"  errors {self.error_rows:,} ({self.error_rate:.2%})"
            + (": " + ", ".join(f"{k} {v:,}" for k, v in self.errors.most_common()) if self.errors else ""),
            f"  truncated {self.truncated_rows:,}",
            "  stage time (s, overlapped) "
            + ", ".join(f"{k} {v:.1f}" for k, v in self.stage_seconds.items()),
        ]
        if self.compute:
            lines.append(f"  compute {self.compute}")
        if self.drift is not None:
            lines.append(f"  {summary_line(self.drift)}")
            if self.drift.get("status") in ("warn", "alert"):
                lines.append(
                    "  (drift compares this input with the model's validation reviews: text of other "
                    "lengths or wording than the model knows; scores are written anyway, and the exit "
                    "code changes only where fail_on_drift asks: --fail-on-drift, or a job's [job.drift].)"
                )
        if len(self.outputs) == 1:
            lines.append(f"  output {self.outputs[0]}")
        elif self.outputs:
            lines.append(f"  outputs {len(self.outputs)} files in {os.path.commonpath(self.outputs)}")
        if self.empty_files:
            lines.append(f"  {self.empty_files} input file(s) had no rows (zero-row outputs written)")
        lines += [
            f"  renamed input column {c!r} to {new!r} (it clashes with an output column)"
            for c, new in self.renamed_columns.items()
        ]
        lines += [
            f"  column {c!r}: invalid UTF-8 bytes replaced by U+FFFD in {n:,} value(s)"
            for c, n in sorted(self.replaced_utf8.items())
        ]
        lines += [f"  bad file: {b}" for b in self.bad_files]
        return lines
