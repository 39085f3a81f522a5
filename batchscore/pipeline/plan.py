"""Everything decided before any row is scored: which files, which outputs, every refusal, and the
preflight that opens each input so a bad shard fails the run in seconds, not hours. No threads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs

from batchscore.base.errors import InputError
from batchscore.io.paths import (
    InputFile,
    Location,
    check_outputs_are_not_inputs,
    check_outputs_are_not_listed_inputs,
    discover_inputs,
    is_pattern,
    plan_outputs,
)
from batchscore.io.readers import ShardReader
from batchscore.monitoring.summary import ProgressListener
from batchscore.pipeline.options import RunOptions


@dataclass
class RunPlan:
    files: list[tuple[InputFile, Location]]  # the readable inputs and their outputs, in input order
    input_types: dict[str, pa.DataType]  # one type per input column across all shards
    preflight_seen: dict[str, tuple] = field(default_factory=dict)  # path -> (size, mtime) checked
    row_count: int | None = None  # every input's rows, when all are known (Parquet footers)
    skips_bad_files: bool = False  # --skip-bad-files with more than one input: a bad file is left out
    bad_files: list[tuple[str, str]] = field(default_factory=list)  # (reason, output) found by the preflight


def plan_run(
    inputs: list[str],
    output: str | None,
    options: RunOptions,
    filesystem: pafs.FileSystem | None = None,
    progress: ProgressListener | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> RunPlan:
    files = discover_inputs(inputs, filesystem)
    single = len(inputs) == 1 and _names_one_file(inputs[0], files)
    targets = plan_outputs(files, output, single, filesystem)
    check_outputs_are_not_inputs(files, targets)
    check_outputs_are_not_listed_inputs(files, targets)
    plan = _preflight(files, targets, options, options.skip_bad_files and len(files) > 1, log)
    (progress or ProgressListener()).planned(len(plan.files), plan.row_count)
    return plan


def _preflight(
    files: list[InputFile],
    targets: list[Location],
    options: RunOptions,
    skips_bad_files: bool,
    log: Callable[[str], None],
) -> RunPlan:
    """Open every input before scoring any; a bad one fails the run, or is skipped and reported."""
    read_options = options.read_options()
    good: list[tuple[InputFile, Location, pa.Schema]] = []
    as_written = not options.csv_infer_types  # CSV values are then text, typed by the other shards
    seen: dict[str, tuple] = {}
    row_counts: list[int | None] = []
    bad: list[tuple[str, str]] = []
    for source, target in zip(files, targets, strict=True):
        try:
            reader = ShardReader(source, read_options)
            schema = reader.schema()
            repeated = sorted({n for n in schema.names if schema.names.count(n) > 1})
            if repeated:
                raise InputError(f"{source}: column name(s) {repeated} appear more than once")
            if good and set(schema.names) != set(good[0][2].names):
                first = good[0]
                raise InputError(
                    f"{source}: columns {sorted(schema.names)} differ from {first[0]}'s "
                    f"{sorted(first[2].names)}; shards of one run must share a schema"
                )
            if options.id_column and options.id_column not in schema.names:
                raise InputError(f"{source}: no id column {options.id_column!r}; columns are {schema.names}")
        except InputError as err:
            if not skips_bad_files:
                raise
            bad.append((str(err), target.uri))
            log(f"skipping bad file: {err}")
            continue
        good.append((source, target, schema))
        seen[source.location.path] = reader.seen
        row_counts.append(reader.num_rows)
    if not good:
        raise InputError("no readable input files: " + "; ".join(reason for reason, _ in bad))
    return RunPlan(
        [(s, t) for s, t, _ in good],
        _run_types(good, as_written, options),
        seen,
        None if None in row_counts else sum(row_counts),
        skips_bad_files,
        bad,
    )


def _run_types(
    good: list[tuple[InputFile, Location, pa.Schema]], as_written: bool, options: RunOptions
) -> dict[str, pa.DataType]:
    typed = [schema for source, _, schema in good if not (as_written and source.format == "csv")]
    written = [schema for source, _, schema in good if as_written and source.format == "csv"]
    unified = unified_types(typed, written, options.text_column)
    if options.input_schema is None:
        return unified
    return fixed_types(unified, typed, options)


def fixed_types(
    unified: dict[str, pa.DataType], typed: list[pa.Schema], options: RunOptions
) -> dict[str, pa.DataType]:
    """The types an earlier run fixed (a job's first night), checked before any scoring: the same
    columns, and each typed shard's type one the fixed type holds without changing values (CSV values
    read as written are converted, and named if one does not fit)."""
    fixed = {f.name: f.type for f in options.input_schema if f.name != options.text_column}
    where = options.input_schema_from or "an earlier run"
    if set(unified) != set(fixed):
        raise InputError(
            f"the input columns {sorted(unified)} differ from {sorted(fixed)}, fixed by {where}; every "
            "night of a job is one table (give a changed input its own job and output)"
        )
    for schema in typed:
        for field_ in schema:
            wanted = fixed.get(field_.name)
            if wanted is None or field_.type == wanted:
                continue
            if not _holds(wanted, field_.type):
                raise InputError(
                    f"column {field_.name!r} is {field_.type} in this input but {wanted} in the table, "
                    f"fixed by {where}; write it as {wanted} upstream, or give the input its own job"
                )
    return fixed


def _holds(wanted: pa.DataType, given: pa.DataType) -> bool:
    """Whether every value of type `given` has the same value in `wanted` (int32 in int64, not text)."""
    pair = [pa.schema([("c", given)]), pa.schema([("c", wanted)])]
    try:
        return pa.unify_schemas(pair, promote_options="permissive").field("c").type == wanted
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return False


def unified_types(
    typed: list[pa.Schema], as_written: list[pa.Schema], text_column: str
) -> dict[str, pa.DataType]:
    """One type per input column for the whole run, whatever the files' formats, so every output of a
    run has one schema and a directory of outputs reads as one table.

    The rule: the typed shards (Parquet, and CSV with --infer-csv-types) decide a column's type
    (int32 and int64 give int64; a column that is text in one of them is text); CSV values kept as
    written take that type (OutputBuilder converts them, naming any value that does not convert); a
    column no typed shard has stays text."""
    types: dict[str, list[pa.DataType]] = {}
    for schema in typed:
        for field_ in schema:
            if field_.name != text_column:
                types.setdefault(field_.name, []).append(field_.type)
    unified = {name: pa.string() for schema in as_written for name in schema.names if name != text_column}
    for name, seen in types.items():
        try:
            unified[name] = (
                pa.unify_schemas([pa.schema([(name, t)]) for t in seen], promote_options="permissive")
                .field(name)
                .type
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            if not any(pa.types.is_string(t) or pa.types.is_large_string(t) for t in seen):
                raise InputError(
                    f"input shards disagree on the type of column {name!r}: {sorted(set(map(str, seen)))}"
                ) from err
            unified[name] = pa.string()
    return unified


def _names_one_file(spec: str, files: list[InputFile]) -> bool:
    """Whether the single INPUT the user gave is one file (not a directory or a glob)."""
    if is_pattern(spec):
        return False
    return len(files) == 1 and files[0].location.uri == spec
