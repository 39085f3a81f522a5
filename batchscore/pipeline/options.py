"""The options of one scoring run, checked when they are made (so a bad value fails before any work)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from batchscore.base import interrupts
from batchscore.base.errors import UsageError
from batchscore.base.settings import RUN_SETTINGS, default
from batchscore.inference.batching import BucketSpec
from batchscore.io.csv_files import CSV_BLOCK_BYTES
from batchscore.io.readers import ReadOptions
from batchscore.monitoring.drift import DriftPolicy


@dataclass(frozen=True)
class RunOptions:
    """One run's options. Defaults and limits are batchscore.base.settings'; the rest is set by callers."""

    text_column: str = default("text_column")
    id_column: str | None = default("id_column")
    keep_text: bool = default("keep_text")
    max_tokens: int | None = default("max_tokens")  # None: the bundle's
    buckets: BucketSpec = field(default_factory=BucketSpec)  # batch_tokens, max_batch_rows
    window_rows: int = default("window_rows")
    host_workers: int | None = default("host_workers")  # None: the machine's cores
    csv_delimiter: str = default("csv_delimiter")
    device: str = default("device")
    overwrite: bool = default("overwrite")
    resume: bool = default("resume")
    skip_bad_files: bool = default("skip_bad_files")
    max_error_rate: float = default("max_error_rate")
    csv_infer_types: bool = default("csv_infer_types")
    precision: str = default("precision")  # or "bfloat16": opt-in, see README "Scoring" (--precision)
    drift: DriftPolicy = field(default_factory=DriftPolicy)  # fail_on_drift and the thresholds
    provenance: bool = default("provenance")  # the provenance columns in every output
    command: str = ""  # recorded in the output lock, so a second run can say who holds it
    resume_hint: str = interrupts.RESUME_HINT  # what an interrupted run tells the operator to do
    partition_keys: tuple[str, ...] = ()  # Hive keys of the folders written into (a job's "date")
    csv_block_bytes: int = CSV_BLOCK_BYTES  # CSV bytes parsed at a time (row numbers do not depend on it)
    # the input columns' types that earlier runs fixed (a job's table: its first night); None: this
    # run's shards decide them. `input_schema_from` says where they were fixed, for messages.
    input_schema: pa.Schema | None = None
    input_schema_from: str = ""

    @classmethod
    def from_settings(cls, values: dict, **others) -> RunOptions:
        """Options from settings by name (the CLI's, a job's): batch_tokens and max_batch_rows make
        the batch plan, fail_on_drift the drift policy; `others` are the fields no setting names."""
        values = dict(values)
        buckets = BucketSpec(
            token_budget=values.pop("batch_tokens", default("batch_tokens")),
            max_rows=values.pop("max_batch_rows", default("max_batch_rows")),
        )
        if "fail_on_drift" in values:
            others.setdefault("drift", DriftPolicy(fail_on_drift=values.pop("fail_on_drift")))
        return cls(buckets=buckets, **values, **others)

    def __post_init__(self) -> None:
        """Reject values that would otherwise fail late, loop, or silently change the scores."""
        problems = []
        checked = {"batch_tokens": self.buckets.token_budget, "max_batch_rows": self.buckets.max_rows}
        for setting in RUN_SETTINGS:
            value = checked.get(setting.name, getattr(self, setting.name, None))
            if setting.name in checked or hasattr(self, setting.name):
                problem = setting.problem(value)
                if problem:
                    problems.append(problem)
        if len(self.csv_delimiter) != 1:
            problems.append(f"csv_delimiter must be one character (got {self.csv_delimiter!r})")
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
        return ReadOptions(
            self.text_column, self.window_rows, self.csv_delimiter, self.csv_infer_types, self.csv_block_bytes
        )
