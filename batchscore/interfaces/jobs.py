"""Nightly job definitions (TOML) -> one idempotent, date-partitioned scoring run.

Layout written for date D under `output`:
    output/date=D/<stem>.parquet       scored shards (Hive-style partition)
    output/date=D/_SUCCESS             written last, removed first on a rerun
    output/_metrics/date=D/metrics.json  rows, errors, labels, throughput, model, versions
metrics.json lives outside the partition directory because readers that list a
partition (pandas/pyarrow datasets) would otherwise try to read it as Parquet.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import string
import tomllib
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from batchscore.base.errors import BatchscoreError, NoInputFound, OutputError, UsageError
from batchscore.base.settings import RUN, default, job_settings
from batchscore.base.version import __version__
from batchscore.io.console import printable
from batchscore.io.delta_table import STAGING, commit_night
from batchscore.io.paths import HIDDEN_PREFIXES, Location, resolve
from batchscore.io.safe_files import (
    is_local,
    json_record,
    own_directory_problem,
    require_own_directory,
    write_location_bytes,
)
from batchscore.monitoring.drift import DriftPolicy
from batchscore.monitoring.summary import RunSummary
from batchscore.pipeline.options import RunOptions

SUCCESS = "_SUCCESS"
_PLACEHOLDERS = ("date", "yyyy", "mm", "dd")
_CHOICES = {
    "engine": RUN["engine"].choices,
    "stale_outputs": ("remove", "fail"),
    "format": ("parquet", "delta"),
}  # the rest: RunOptions
_TYPES = {"str": str, "str | None": str, "bool": bool, "float": float, "int": int, "int | None": int}


class JobSpecError(UsageError):
    """A job definition that cannot run as written (exit 2, the key named)."""


def _check_type(path: Path, key: str, value, annotation: str, table: str = "job") -> None:
    expected = _TYPES[annotation]
    ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise JobSpecError(
            f"{path}: [{table}] {key} = {value!r}; expected {annotation.replace(' | None', '')}"
        )


def _known_keys(path: Path, name: str, table: dict, schema, elsewhere: dict | None = None) -> dict:
    """The dataclass fields a TOML table may set; any other key is an error naming them all, and the
    table it belongs in when it is another table's key (`elsewhere`: table name -> its dataclass)."""
    known = {f.name: f for f in fields(schema)}
    unknown = sorted(set(table) - set(known))
    for key in unknown:
        for other, other_schema in (elsewhere or {}).items():
            if key in {f.name for f in fields(other_schema)}:
                raise JobSpecError(f"{path}: [{name}] {key} belongs under [{other}]; move it there")
    if unknown:
        raise JobSpecError(f"{path}: unknown [{name}] keys {unknown}; known keys are {sorted(known)}")
    return known


def _placeholders(path: Path, key: str, value: str) -> set[str]:
    """The {names} in a path template; a stray brace, a format spec or a conversion ({date:%Y},
    {date!r}) is the job file's error, named as such: each placeholder is a plain name."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(value)]
    except ValueError as err:
        raise JobSpecError(
            f"{path}: [job] {key} = {value!r}: {err} (placeholders look like {{date}})"
        ) from err
    for name, spec, conversion in fields:
        if name is not None and (spec or conversion or not name.isidentifier()):
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise JobSpecError(
                f"{path}: [job] {key} = {value!r}: {shown} is not a placeholder; write a plain name such as "
                "{date} or {yyyy}"
            )
    return {name for name, _, _ in fields if name is not None}


def _drift_policy(path: Path, table) -> DriftPolicy:
    """[job.drift]: overrides of the drift thresholds and fail_on_drift, each key checked."""
    if not isinstance(table, dict):
        raise JobSpecError(f"{path}: [job] drift must be a table ([job.drift])")
    known = _known_keys(path, "job.drift", table, DriftPolicy)
    for key, value in table.items():
        _check_type(path, key, value, known[key].type, "job.drift")
    policy = DriftPolicy(**table)
    if policy.problems():
        raise JobSpecError(f"{path}: [job.drift] " + "; ".join(policy.problems()))
    return policy


@dataclass(frozen=True)
class JobSpec:
    name: str
    input: str  # may hold {date}, {yyyy}, {mm}, {dd}
    output: str  # partition root
    model: str | None = None
    engine: str = default("engine")
    ray_address: str | None = default("ray_address")
    # the run settings a job may set (batchscore.base.settings, in_job): their defaults and limits
    text_column: str = default("text_column")
    id_column: str | None = default("id_column")
    keep_text: bool = default("keep_text")
    max_error_rate: float = default("max_error_rate")
    skip_bad_files: bool = default("skip_bad_files")
    batch_tokens: int = default("batch_tokens")
    max_batch_rows: int = default("max_batch_rows")
    window_rows: int = default("window_rows")
    max_tokens: int | None = default("max_tokens")
    host_workers: int | None = default("host_workers")
    csv_delimiter: str = default("csv_delimiter")
    csv_infer_types: bool = default("csv_infer_types")
    device: str = default("device")
    precision: str = default("precision")
    provenance: bool = default("provenance")  # model, model_sha256, run_id and scored_at columns

    stale_outputs: str = "remove"  # outputs in the partition that no current input maps to: remove | fail
    format: str = "parquet"  # parquet: Hive partitions date=D/; delta: one Delta Lake table (delta_table.py)
    drift: DriftPolicy = field(default_factory=DriftPolicy)  # [job.drift]

    @classmethod
    def load(cls, path: Path) -> JobSpec:
        """Parse and check every key now (types, placeholders, names), before any work is done."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise JobSpecError(f"{path}: cannot read job definition: {err}") from err
        except UnicodeDecodeError as err:
            raise JobSpecError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from err
        except tomllib.TOMLDecodeError as err:
            raise JobSpecError(f"{path}: not valid TOML: {err}") from err
        job = data.get("job")
        if not isinstance(job, dict):
            raise JobSpecError(f"{path}: expected a [job] table")
        known = _known_keys(path, "job", job, cls, elsewhere={"job.drift": DriftPolicy})
        missing = [k for k in ("name", "input", "output") if k not in job]
        if missing:
            raise JobSpecError(f"{path}: [job] needs {missing}")
        job = dict(job)
        if "drift" in job:
            job["drift"] = _drift_policy(path, job["drift"])
        for key, value in job.items():
            if key != "drift":
                _check_type(path, key, value, known[key].type)
        for key, allowed in _CHOICES.items():
            if key in job and job[key] not in allowed:
                raise JobSpecError(f"{path}: [job] {key} = {job[key]!r}; expected one of {list(allowed)}")
        for key in ("name", "input", "output"):
            if not job[key].strip():  # "" would mean the current directory (input) or / (output)
                raise JobSpecError(f"{path}: [job] {key} is empty")
            if job[key].startswith("~"):  # no shell expands it here: it would be a folder named "~"
                raise JobSpecError(
                    f"{path}: [job] {key} = {job[key]!r}: write the home directory out in full"
                )
        placeholders = _placeholders(path, "input", job["input"])
        if placeholders - set(_PLACEHOLDERS):
            unknown_names = ", ".join("{" + p + "}" for p in sorted(placeholders - set(_PLACEHOLDERS)))
            known_names = ", ".join("{" + p + "}" for p in _PLACEHOLDERS)
            raise JobSpecError(
                f"{path}: [job] input uses unknown placeholder(s) {unknown_names}; known: {known_names}"
            )
        if _placeholders(path, "output", job["output"]):
            raise JobSpecError(
                f"{path}: [job] output = {job['output']!r} takes no placeholders: each date is written "
                "to its own partition below it, OUTPUT/date=YYYY-MM-DD/"
            )
        spec = cls(**job)
        try:
            spec.run_options()
        except UsageError as err:
            raise JobSpecError(f"{path}: [job] {err}") from err
        return spec

    def input_for(self, day: date) -> str:
        return self.input.format(
            date=day.isoformat(), yyyy=f"{day.year:04d}", mm=f"{day.month:02d}", dd=f"{day.day:02d}"
        )

    def run_options(self) -> RunOptions:
        run_keys = [s.name for s in job_settings() if s.name not in ("engine", "ray_address")]
        return RunOptions.from_settings(
            {name: getattr(self, name) for name in run_keys},
            resume_hint="Rerun the job for this date to continue (a rerun resumes).",
            drift=self.drift,
            resume=True,  # reruns of a date skip finished shards and continue partial ones
            partition_keys=("date",),  # an input column `date` must not shadow the partition's
        )


@dataclass(frozen=True)
class JobPaths:
    root: Location  # the job's output: Parquet partitions, or a Delta table
    partition: Location  # where the night's Parquet outputs go (a Delta job: staged there first)
    success: Location
    metrics: Location


def job_paths(spec: JobSpec, day: date) -> JobPaths:
    root = resolve(spec.output)
    nights = root.child(STAGING) if spec.format == "delta" else root
    partition = nights.child(f"date={day.isoformat()}")
    metrics_dir = root.child("_metrics").child(f"date={day.isoformat()}")
    return JobPaths(root, partition, partition.child(SUCCESS), metrics_dir.child("metrics.json"))


def run_job(
    spec_path: Path,
    day: date,
    progress: bool | None = None,
    log=print,
    summary_json: Path | str | None = None,
) -> dict:
    """Run one date of a job; returns the metrics written to metrics.json (and, with `summary_json`,
    as one JSON line to that file or "-" stdout, on failure too)."""
    from batchscore.interfaces.run_command import run_reported, write_json_line

    spec = JobSpec.load(spec_path)
    paths = job_paths(spec, day)
    log(f"job {spec.name} for {day.isoformat()}: {spec.input_for(day)} -> {paths.partition.uri}")
    owner, table = _open_night(spec, paths)
    schema, schema_from = _table_schema(owner, table)
    # No partition is created here: the run creates it only once its inputs passed the preflight.
    started = datetime.now(UTC)
    summary = run_reported(
        [spec.input_for(day)],
        paths.partition.uri,
        spec.model,
        replace(spec.run_options(), input_schema=schema, input_schema_from=schema_from),
        progress=progress,
        log=log,
        engine=spec.engine,
        ray_address=spec.ray_address,
    )
    if summary.failure is None:
        summary = _after_run(spec, paths, day, summary, log)
    metrics = _record_night(spec, day, started, paths, (owner, table), summary, log)
    if summary_json is not None:
        write_json_line(metrics, summary_json)
    if summary.failure is not None:
        raise summary.failure
    if summary.bad_files:
        log(
            f"job {spec.name} for {day.isoformat()}: {len(summary.bad_files)} bad file(s), "
            "_SUCCESS not written"
        )
    else:
        write_location_bytes(paths.success, b"")
        log(f"job {spec.name} for {day.isoformat()}: wrote {paths.success.uri}")
    return metrics


def _open_night(spec: JobSpec, paths: JobPaths) -> tuple[Location, dict | None]:
    """The job's root checked as this job's own, the night's _SUCCESS withdrawn until it finishes;
    the owner marker and the table types it fixed (None before the first night)."""
    owner = paths.root.child(OWNER_FILE)
    _require_own_folders(paths)
    recorded = _read_owner(owner)
    _check_owner(spec, owner, recorded)
    if paths.success.exists():
        paths.partition.filesystem.delete_file(paths.success.path)  # a rerun is not a success until it ends
    return owner, (recorded or {}).get("table")


def _record_night(
    spec: JobSpec,
    day: date,
    started: datetime,
    paths: JobPaths,
    owner_and_table: tuple[Location, dict | None],
    summary: RunSummary,
    log,
) -> dict:
    """The night claimed in the owner marker and its metrics.json written (a failed night too, with
    its exit code and counts); the metrics."""
    owner, table = owner_and_table
    if summary.failure is None:
        _claim(spec, owner, day, table, summary)
        return _write_metrics(spec, day, started, paths, summary)
    if owner.parent().exists():
        _claim(spec, owner, day, table)
    if isinstance(summary.failure, NoInputFound) and not paths.root.exists():
        # Nothing landed and the job never ran here: create no output root just to say so.
        log(f"job {spec.name}: nothing to score and no output root yet; no metrics.json written")
        return _metrics(spec, day, started, paths, summary)
    return _write_metrics(spec, day, started, paths, summary)


def _after_run(spec: JobSpec, paths: JobPaths, day: date, summary: RunSummary, log) -> RunSummary:
    """The night's outputs made whole: stale ones removed, a Delta night committed (or the failure)."""
    try:
        stale = _remove_stale_outputs(spec, paths.partition, summary, log)
        summary = replace(summary, stale_outputs_removed=stale)
        if spec.format == "delta" and summary.outputs:
            outputs = [resolve(uri) for uri in summary.outputs]
            summary = replace(summary, delta=commit_night(paths.root, outputs, spec.name, day, log))
    except BatchscoreError as err:
        return summary.failed_with(err)
    return summary


def _remove_stale_outputs(spec: JobSpec, partition: Location, summary: RunSummary, log) -> list[str]:
    """Outputs of the night that no current input maps to (an input removed upstream): removed, or
    the night fails (`stale_outputs = "fail"`). A skipped bad file still maps to its output: an
    earlier good one stays until the file is fixed."""
    stale = _stale_outputs(partition, summary.outputs + summary.bad_file_outputs)
    if stale and spec.stale_outputs == "fail":
        raise OutputError(
            f"{partition.uri}: {len(stale)} output(s) no current input maps to "
            f"({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}); remove them, or set "
            'stale_outputs = "remove" in the job'
        )
    for relative in stale:
        partition.filesystem.delete_file(partition.child(relative).path)
        log(f"removed stale output {partition.child(relative).uri} (no current input maps to it)")
    return stale


OWNER_FILE = "_batchscore_job.json"  # which job owns an output root (`_`: readers skip it)


OWNER_SCHEMA_VERSION = 1


def _owner_record(spec: JobSpec) -> dict:
    return {
        "schema_version": OWNER_SCHEMA_VERSION,
        "job": spec.name,
        "input": spec.input,
        "format": spec.format,
    }


def _owner_identity(record: dict) -> tuple:
    """What makes two owner records the same job (a marker's other keys, its version, may differ);
    a marker from before formats is a Parquet job's. A root never changes format: Parquet readers of
    it would see a Delta table's data files, and a Delta table would not see the Parquet nights."""
    return record.get("job"), record.get("input"), record.get("format", "parquet")


def _read_owner(owner: Location) -> dict | None:
    """The root's owner marker (None: no job has run here yet), read once per night."""
    try:
        with owner.filesystem.open_input_stream(owner.path) as handle:
            return json_record(handle.read(), {"job": str, "input": str, "table": (dict, type(None))})
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise OutputError(
            f"{owner.uri}: cannot read which job owns this output root: {printable(str(err), 200)}"
        ) from err


def _check_owner(spec: JobSpec, owner: Location, recorded: dict | None) -> None:
    """Two jobs writing one output root would delete each other's outputs as stale: refuse."""
    if recorded is not None and _owner_identity(recorded) != _owner_identity(_owner_record(spec)):
        raise OutputError(
            f"{owner.parent().uri} belongs to job {recorded.get('job')!r} (input {recorded.get('input')!r}, "
            f"format {recorded.get('format', 'parquet')!r}), not {spec.name!r} (input {spec.input!r}, format "
            f"{spec.format!r}); give each job its own output, or remove {owner.uri} if this job took it over"
        )


def _claim(
    spec: JobSpec, owner: Location, day: date, table: dict | None, summary: RunSummary | None = None
) -> None:
    """Mark the root as this job's; the first night that scored records the input columns' types
    (`table`, once recorded, is kept), which every later night is then written in (one table across
    nights, whatever the formats)."""
    record = _owner_record(spec)
    if table is not None:
        record["table"] = table
    elif summary is not None and summary.input_types and summary.status == "ok":
        schema = pa.schema(list(summary.input_types.items()))
        record["table"] = {
            "night": day.isoformat(),
            "types": {name: str(t) for name, t in summary.input_types.items()},  # for people
            "arrow_schema": base64.b64encode(schema.serialize().to_pybytes()).decode("ascii"),
        }
    write_location_bytes(owner, json.dumps(record).encode("utf-8"))


def _table_schema(owner: Location, table: dict | None) -> tuple[pa.Schema | None, str]:
    """The input schema the job's first night fixed (the owner marker's `table`), and where it came
    from; (None, "") before it."""
    if table is None:
        return None, ""
    try:
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(table["arrow_schema"], validate=True)))
        night = str(table["night"])
    except (KeyError, TypeError, ValueError, pa.ArrowException) as err:
        raise OutputError(f"{owner.uri}: the job's recorded table schema is damaged ({err}); remove its "
                          '"table" to record it again from the next night') from err  # fmt: skip
    return schema, f"the job's night {night} ({owner.uri})"


def _require_own_folders(paths: JobPaths) -> None:
    """The job writes into and deletes from its root, the night's partition and its metrics folder:
    on a local disk each must be the running user's own real directory (none is created here)."""
    if not is_local(paths.partition.filesystem):
        return
    root = paths.root
    metrics_dir = paths.metrics.parent()
    for folder, role in (
        (root, "the job's output root"),
        (paths.partition, "the night's partition folder"),
        (metrics_dir.parent(), "the job's metrics folder"),
        (metrics_dir, "the night's metrics folder"),
    ):
        require_own_directory(folder.path, role)


def _stale_outputs(partition: Location, outputs: list[str]) -> list[str]:
    """Parquet files in the partition (relative names) that this run did not write or confirm; on a
    local disk only files in the partition's own folders, never through a symbolic link."""
    current = {uri.rstrip("/") for uri in outputs}
    stale = []
    for relative in _files_below(partition):
        hidden = any(part.startswith(HIDDEN_PREFIXES) for part in relative.split("/"))
        if hidden or not relative.endswith(".parquet"):
            continue
        if partition.child(relative).uri.rstrip("/") not in current:
            stale.append(relative)
    return sorted(stale)


def _files_below(folder: Location) -> list[str]:
    if not is_local(folder.filesystem):
        selector = pafs.FileSelector(folder.path, recursive=True, allow_not_found=True)
        prefix = len(folder.path.rstrip("/")) + 1
        infos = folder.filesystem.get_file_info(selector)
        return [info.path[prefix:] for info in infos if info.type == pafs.FileType.File]
    files = []
    for directory, subdirs, names in os.walk(folder.path):  # symbolic links to folders: not entered
        if own_directory_problem(directory):
            subdirs[:] = []
            continue
        below = os.path.relpath(directory, folder.path)
        for name in names:
            if os.path.isfile(os.path.join(directory, name)) and not os.path.islink(
                os.path.join(directory, name)
            ):
                files.append(name if below == "." else f"{below}/{name}")
    return files


RERUN_KEYS = ("run_id", "started_at", "finished_at", "status", "exit_code", "files_already_done", "seconds")


def _earlier_metrics(location: Location) -> dict | None:
    """The night's metrics.json when it records a finished run that scored rows, else None."""
    try:
        with location.filesystem.open_input_stream(location.path) as handle:
            earlier = json_record(
                handle.read(), {"status": str, "rows_scored_this_run": int, "reruns": (list, type(None))}
            )
    except (OSError, ValueError):  # none yet, or unreadable: this run's record replaces it
        return None
    return earlier if earlier["status"] == "ok" and earlier["rows_scored_this_run"] > 0 else None


def _metrics(spec: JobSpec, day: date, started: datetime, paths: JobPaths, summary: RunSummary) -> dict:
    return {
        **summary.to_dict(),  # its schema_version is this document's: the job's keys are part of it
        "job": spec.name,
        "date": day.isoformat(),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": spec.input_for(day),
        "partition": paths.partition.uri,
        "engine": spec.engine,
        "format": spec.format,
        "delta": summary.delta,  # a Delta job's commit of the night; null for Parquet
        "versions": {"batchscore": __version__, "python": platform.python_version()},
    }


def _write_metrics(spec: JobSpec, day: date, started: datetime, paths: JobPaths, summary: RunSummary) -> dict:
    """metrics.json of the night. A rerun that found every output finished and changed nothing keeps
    the night's record (the run that scored it) and is added to its `reruns`, not written over it."""
    metrics = _metrics(spec, day, started, paths, summary)
    earlier = (
        _earlier_metrics(paths.metrics) if summary.status == "ok" and not summary.rows_scored_now else None
    )
    unchanged = (
        earlier is not None
        and not summary.stale_outputs_removed
        and all(earlier.get(key) == metrics[key] for key in ("rows", "outputs", "labels", "error_rows"))
    )
    if unchanged:
        rerun = {key: metrics[key] for key in RERUN_KEYS}
        metrics = {**earlier, "reruns": [*earlier.get("reruns", []), rerun]}
    paths.metrics.filesystem.create_dir(paths.metrics.parent().path)
    # whole or not at all, and a name planted there is replaced, never written through
    write_location_bytes(paths.metrics, (json.dumps(metrics, indent=2) + "\n").encode("utf-8"))
    return metrics
