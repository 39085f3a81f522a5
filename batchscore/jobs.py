"""Nightly job definitions (TOML) -> one idempotent, date-partitioned scoring run.

Layout written for date D under `output`:
    output/date=D/<stem>.parquet       scored shards (Hive-style partition)
    output/date=D/_SUCCESS             written last, removed first on a rerun
    output/_metrics/date=D/metrics.json  rows, errors, labels, throughput, model, versions
metrics.json lives outside the partition directory because readers that list a
partition (pandas/pyarrow datasets) would otherwise try to read it as Parquet.
"""

from __future__ import annotations

import json
import platform
import tomllib
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from pathlib import Path

from batchscore import __version__
from batchscore.batching import BucketSpec
from batchscore.errors import BatchscoreError
from batchscore.io.paths import Location, resolve
from batchscore.pipeline import RunOptions
from batchscore.report import RunSummary

SUCCESS = "_SUCCESS"


@dataclass(frozen=True)
class JobSpec:
    name: str
    input: str  # may hold {date}, {yyyy}, {mm}, {dd}
    output: str  # partition root
    model: str | None = None
    engine: str = "local"
    ray_address: str | None = None
    text_column: str = "text"
    id_column: str | None = None
    keep_text: bool = False
    max_error_rate: float = 0.05
    skip_bad_files: bool = False
    batch_tokens: int = 131072
    window_rows: int = 16384
    device: str = "auto"
    precision: str = "float32"

    @classmethod
    def load(cls, path: Path) -> JobSpec:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise BatchscoreError(f"{path}: cannot read job definition: {err}") from err
        job = data.get("job")
        if not isinstance(job, dict):
            raise BatchscoreError(f"{path}: expected a [job] table")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(job) - known)
        if unknown:
            raise BatchscoreError(f"{path}: unknown [job] keys {unknown}; known keys are {sorted(known)}")
        missing = [k for k in ("name", "input", "output") if k not in job]
        if missing:
            raise BatchscoreError(f"{path}: [job] needs {missing}")
        return cls(**job)

    def input_for(self, day: date) -> str:
        return self.input.format(
            date=day.isoformat(), yyyy=f"{day.year:04d}", mm=f"{day.month:02d}", dd=f"{day.day:02d}"
        )

    def run_options(self) -> RunOptions:
        return RunOptions(
            text_column=self.text_column,
            id_column=self.id_column,
            keep_text=self.keep_text,
            max_error_rate=self.max_error_rate,
            skip_bad_files=self.skip_bad_files,
            buckets=BucketSpec(token_budget=self.batch_tokens),
            window_rows=self.window_rows,
            device=self.device,
            precision=self.precision,
            resume=True,  # reruns of a date skip finished shards and continue partial ones
        )


@dataclass(frozen=True)
class JobPaths:
    partition: Location
    success: Location
    metrics: Location


def job_paths(spec: JobSpec, day: date) -> JobPaths:
    root = resolve(spec.output)
    partition = root.child(f"date={day.isoformat()}")
    metrics_dir = root.child("_metrics").child(f"date={day.isoformat()}")
    return JobPaths(partition, partition.child(SUCCESS), metrics_dir.child("metrics.json"))


def run_job(spec_path: Path, day: date, progress: bool | None = None, log=print) -> dict:
    """Run one date of a job; returns the metrics written to metrics.json."""
    from batchscore.runner import run_scoring

    spec = JobSpec.load(spec_path)
    paths = job_paths(spec, day)
    fs = paths.partition.filesystem
    if paths.success.exists():
        fs.delete_file(paths.success.path)  # a rerun is not a success until it finishes
    fs.create_dir(paths.partition.path)
    started = datetime.now(UTC)
    summary: RunSummary = run_scoring(
        [spec.input_for(day)],
        paths.partition.uri,
        spec.model,
        spec.run_options(),
        progress=progress,
        log=log,
        engine=spec.engine,
        ray_address=spec.ray_address,
    )
    metrics = {
        "job": spec.name,
        "date": day.isoformat(),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": spec.input_for(day),
        "partition": paths.partition.uri,
        "engine": spec.engine,
        "versions": {"batchscore": __version__, "python": platform.python_version()},
        **summary.to_dict(),
    }
    fs.create_dir(paths.metrics.parent().path)
    with fs.open_output_stream(paths.metrics.path) as handle:
        handle.write((json.dumps(metrics, indent=2) + "\n").encode("utf-8"))
    if not summary.bad_files:
        with fs.open_output_stream(paths.success.path):
            pass
    return metrics
