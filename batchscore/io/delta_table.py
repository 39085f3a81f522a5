"""A job's nights as one Delta Lake table (`format = "delta"` in the job file).

A night is first scored as for a Parquet job, into `ROOT/_staging/date=D/`: the same crash-safe,
resumable outputs. Then one Delta transaction replaces that date's rows with the staged ones. So a
kill at any moment leaves either the table as it was or the night committed whole (files a killed
commit wrote are in no log entry, and no reader sees them); a rerun or a resumed night commits once:
the commit records the staged outputs' fingerprint, and a night whose staged outputs are unchanged
since its last commit is not committed again. Each commit also carries the night's transaction
identifier (`batchscore:JOB:DATE`, its version one more per commit), the table's own record of which
nights were written. The schema is the table's: a night in other types is refused by the commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import date

import pyarrow as pa
import pyarrow.dataset as ds

from batchscore.base.errors import OutputError, require_extra
from batchscore.io.paths import Location
from batchscore.io.writers import read_file_metadata, step_done

STAGING = "_staging"  # `_`: Delta, Spark and pyarrow readers of the table root skip it
NIGHT_KEY, CONTENT_KEY = "batchscore.night", "batchscore.content"


def commit_night(
    root: Location, outputs: list[Location], job: str, day: date, log: Callable[[str], None]
) -> dict:
    """Commit the night's staged `outputs` to the Delta table at `root` (created by the first night);
    returns what the night's metrics record: the table version and whether this run committed."""
    deltalake = require_extra("deltalake", "delta", 'a job with format = "delta"')
    night = f"{job}:{day.isoformat()}"
    content = _content_id(outputs)
    table = _open_table(deltalake, root)
    step_done("night staged")
    if table is not None and _last_content(table, night) == content:
        log(f"delta table {root.uri}: night {day.isoformat()} already committed (version {table.version()})")
        return {"table_version": table.version(), "committed_by_this_run": False}
    app_id = f"batchscore:{night}"
    version = ((table.transaction_version(app_id) or 0) if table is not None else 0) + 1
    rows = _rows_with_date(outputs, day)
    properties = deltalake.CommitProperties(
        custom_metadata={NIGHT_KEY: night, CONTENT_KEY: content},
        app_transactions=[deltalake.Transaction(app_id, version)],
    )
    try:
        deltalake.write_deltalake(
            root.uri,
            rows,
            mode="append" if table is None else "overwrite",
            predicate=None if table is None else f"date = '{day.isoformat()}'",
            partition_by=["date"],
            commit_properties=properties,
        )
    except Exception as err:  # deltalake's own errors (schema mismatch, storage) have no common base
        raise OutputError(f"{root.uri}: the Delta commit of {day.isoformat()} failed: {err}") from err
    committed = _open_table(deltalake, root).version()
    step_done("night committed")
    log(f"delta table {root.uri}: committed {day.isoformat()} as version {committed}")
    return {"table_version": committed, "committed_by_this_run": True}


def _open_table(deltalake, root: Location):
    try:
        return deltalake.DeltaTable(root.uri)
    except deltalake.exceptions.TableNotFoundError:
        return None


def _last_content(table, night: str) -> str | None:
    """The staged content the night's latest commit recorded (None: never committed)."""
    for entry in table.history():  # newest first
        if entry.get(NIGHT_KEY) == night:
            return entry.get(CONTENT_KEY)
    return None


def _content_id(outputs: list[Location]) -> str:
    """The staged night's identity: each output's name and the fingerprint it was written with
    (input content, model, settings), read from its footer."""
    digest = hashlib.sha256()
    for output in sorted(outputs, key=lambda o: o.path):
        fingerprint = read_file_metadata(output).get("fingerprint", "")
        digest.update(json.dumps([output.name, fingerprint]).encode("utf-8"))
    return digest.hexdigest()


def _rows_with_date(outputs: list[Location], day: date) -> pa.RecordBatchReader:
    """The staged rows, streamed, with the `date` partition column the Parquet layout has."""
    dataset = ds.dataset([o.path for o in outputs], filesystem=outputs[0].filesystem, format="parquet")
    schema = dataset.schema.remove_metadata().append(pa.field("date", pa.date32()))

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in dataset.to_batches():
            days = pa.repeat(pa.scalar(day, pa.date32()), batch.num_rows)
            yield pa.RecordBatch.from_arrays([*batch.columns, days], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())
