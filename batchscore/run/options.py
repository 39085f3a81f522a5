"""The options of one scoring run, checked when they are made (so a bad value fails before any work)."""

from __future__ import annotations

from dataclasses import dataclass, field

from batchscore import interrupts
from batchscore.batching import BucketSpec
from batchscore.drift import DriftPolicy
from batchscore.errors import UsageError
from batchscore.io.readers import ReadOptions
from batchscore.model import PRECISIONS
from batchscore.runtime import DEVICES


@dataclass(frozen=True)
class RunOptions:
    text_column: str = "text"
    id_column: str | None = None
    keep_text: bool = False
    max_tokens: int | None = None  # None: the bundle's
    buckets: BucketSpec = field(default_factory=BucketSpec)
    window_rows: int = 16384
    host_workers: int | None = None  # threads that tokenize and pad; None: the machine's cores
    csv_delimiter: str = ","
    device: str = "auto"
    overwrite: bool = False
    resume: bool = False
    skip_bad_files: bool = False
    max_error_rate: float = 0.05
    csv_infer_types: bool = False
    precision: str = "float32"  # or "bfloat16": opt-in, see README "Precision"
    drift: DriftPolicy = field(default_factory=DriftPolicy)
    command: str = ""  # recorded in the output lock, so a second run can say who holds it
    resume_hint: str = interrupts.RESUME_HINT  # what an interrupted run tells the operator to do
    partition_keys: tuple[str, ...] = ()  # Hive keys of the folders written into (a job's "date")
    provenance: bool = True  # the PROVENANCE_COLUMNS in every output

    def __post_init__(self) -> None:
        """Reject values that would otherwise fail late, loop, or silently change the scores."""
        problems = []
        if self.max_tokens is not None and (isinstance(self.max_tokens, bool) or self.max_tokens < 1):
            problems.append(f"max_tokens must be at least 1 (got {self.max_tokens!r})")
        if self.host_workers is not None and self.host_workers < 1:
            problems.append(f"host_workers must be at least 1 (got {self.host_workers!r})")
        if self.window_rows < 1:
            problems.append(f"window_rows must be at least 1 (got {self.window_rows!r})")
        if self.buckets.token_budget < 1 or self.buckets.max_rows < 1:
            problems.append(
                f"batch_tokens and max_batch_rows must be at least 1 "
                f"(got {self.buckets.token_budget!r}, {self.buckets.max_rows!r})"
            )
        if not 0.0 <= self.max_error_rate <= 1.0:  # also rejects NaN
            problems.append(f"max_error_rate must be between 0 and 1 (got {self.max_error_rate!r})")
        if len(self.csv_delimiter) != 1:
            problems.append(f"csv_delimiter must be one character (got {self.csv_delimiter!r})")
        if self.device not in DEVICES:
            problems.append(f"device must be one of {DEVICES} (got {self.device!r})")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS} (got {self.precision!r})")
        if self.overwrite and self.resume:
            problems.append("overwrite and resume exclude each other")
        if self.id_column is not None and self.id_column == self.text_column and not self.keep_text:
            # the output drops the text column, and an id column replaces `row`: no way back to the input
            problems.append(
                f"id_column {self.id_column!r} is the text column, which the output leaves out: "
                "name another id column, or add --keep-text"
            )
        problems += self.drift.problems()
        if problems:
            raise UsageError("; ".join(problems))

    def read_options(self) -> ReadOptions:
        return ReadOptions(self.text_column, self.window_rows, self.csv_delimiter, self.csv_infer_types)
