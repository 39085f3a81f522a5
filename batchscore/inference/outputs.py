"""The output table of a scored window: input columns (renamed on a clash), scores, provenance.

Every engine and the Python API build their rows here, so a file written by `batchscore run`, a
DataFrame scored on Spark and a table scored in a notebook have the same columns and values.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batchscore.base.errors import InputError
from batchscore.inference.rows import Window
from batchscore.io.console import printable
from batchscore.model.bundle import Bundle
from batchscore.model.probabilities import is_positive, softmax
from batchscore.monitoring.drift import Profile

# the scores of a row, as every output (a file, the API's table, a Spark DataFrame) holds them
SCORE_SCHEMA = pa.schema(
    [
        ("label", pa.string()),
        ("prob_positive", pa.float32()),
        ("prob_negative", pa.float32()),
        ("n_tokens", pa.int32()),
        ("truncated", pa.bool_()),
        ("error", pa.string()),
    ]
)
SCORE_COLUMNS = tuple(SCORE_SCHEMA.names)
OUTPUT_COLUMNS = ("row", *SCORE_COLUMNS)  # "row": the input row number, where no id column is named
# which model scored a row, and in which run: plain columns, so Spark, DuckDB and pandas need no metadata API
PROVENANCE_COLUMNS = ("model", "model_sha256", "run_id", "scored_at")
PROVENANCE_TYPES = (pa.string(), pa.string(), pa.string(), pa.timestamp("us", tz="UTC"))


@dataclass(frozen=True)
class OutputBuilder:
    """How one run shapes its output rows; `input_types` are the run-wide types of the input columns."""

    bundle: Bundle
    max_tokens: int
    text_column: str = "text"
    id_column: str | None = None
    keep_text: bool = False
    partition_keys: tuple[str, ...] = ()
    provenance: bool = True
    input_types: dict[str, pa.DataType] = field(default_factory=dict)

    def renamed(self, input_columns: list[str], with_provenance: bool) -> dict[str, str]:
        return output_names(
            input_columns, self.text_column, self.keep_text, self.partition_keys, with_provenance
        )

    def _converted(self, window: Window, name: str, wanted: pa.DataType) -> pa.ChunkedArray:
        """The window's column `name` in the run's type; a value that does not convert stops the file,
        naming its row (e.g. text in a CSV where the Parquet shards hold integers, or an int64 above
        2**53 that float64 would round)."""
        column = window.table.column(name)
        try:
            return _as_typed(column, wanted)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            where = window.task.source if window.task is not None else "input"
            row = next((i for i in range(len(column)) if not _converts(column.slice(i, 1), wanted)), None)
            at = f"row {window.first_row + row:,}, " if row is not None else ""
            value = f" (value {printable(str(column[row].as_py()), 60)!r})" if row is not None else ""
            raise InputError(
                f"{where}: {at}column {name!r}{value} does not fit the run's type {wanted} (decided by the "
                f"typed shards of the run, {column.type} here) without changing values"
            ) from err

    def table(
        self,
        window: Window,
        run: dict[str, str] | None = None,
        profile: Profile | None = None,
        with_row: bool = True,
    ) -> pa.Table:
        """The window's output rows; `run` (new_run_record()) adds the provenance columns, `profile`
        counts the scored rows for drift."""
        n = window.table.num_rows
        ok = window.reasons == None  # noqa: E711
        probs = softmax(window.logits, self.bundle.temperature)
        prob_pos = np.zeros(n, np.float64)
        prob_pos[ok] = probs[:, 1]
        positive = is_positive(prob_pos)
        negative_name, positive_name = self.bundle.labels
        labels = np.where(positive, positive_name, negative_name).astype(object)
        labels[~ok] = None
        n_tokens = window.encoded.n_tokens
        truncated = n_tokens > self.max_tokens
        text_invalid = window.texts.is_null().to_numpy(zero_copy_only=False)

        columns: dict[str, pa.Array] = {}
        if with_row and not self.id_column:
            columns["row"] = pa.array(np.arange(window.first_row, window.first_row + n, dtype=np.int64))
        provenance = self.provenance and run is not None
        for name, out_name in self.renamed(window.table.column_names, provenance).items():
            if name == self.text_column:
                columns[out_name] = window.texts
                continue
            column = window.table.column(name)
            wanted = self.input_types.get(name, column.type)
            columns[out_name] = column if column.type == wanted else self._converted(window, name, wanted)
        scores = {  # (values, rows without one)
            "label": (labels, None),
            "prob_positive": (prob_pos.astype(np.float32), ~ok),
            "prob_negative": ((1.0 - prob_pos).astype(np.float32), ~ok),
            "n_tokens": (n_tokens, text_invalid),
            "truncated": (truncated, text_invalid),
            "error": (window.reasons, None),
        }
        for field_ in SCORE_SCHEMA:
            values, missing = scores[field_.name]
            columns[field_.name] = pa.array(values, field_.type, mask=missing)
        if profile is not None:
            profile.add(window.encoded.ids, n_tokens[ok], prob_pos[ok])  # error rows have no ids
        if provenance:
            columns.update(provenance_columns(self.bundle, run, n))
        return pa.table(columns)


def _converts(value: pa.ChunkedArray, wanted: pa.DataType) -> bool:
    try:
        _as_typed(value, wanted)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _as_typed(column: pa.ChunkedArray, wanted: pa.DataType) -> pa.ChunkedArray:
    """`column` in the run's type: text kept as written (a CSV's) converts like a typed shard's
    value would read, an empty field being null."""
    if pa.types.is_string(column.type) and not pa.types.is_string(wanted):
        column = pc.if_else(pc.equal(column, ""), pa.scalar(None, column.type), column)
    return column.cast(wanted)


def provenance_columns(bundle: Bundle, run: dict[str, str], rows: int) -> dict[str, pa.Array]:
    """The PROVENANCE_COLUMNS of `rows` rows scored by `bundle` in `run` (new_run_record())."""
    values = (bundle.name, bundle.bundle_sha256, run["run_id"], datetime.fromisoformat(run["scored_at"]))
    return {
        name: pa.repeat(pa.scalar(value, type_), rows)
        for name, value, type_ in zip(PROVENANCE_COLUMNS, values, PROVENANCE_TYPES, strict=True)
    }


def new_run_record() -> dict[str, str]:
    """A run's id (sortable by start time, unique) and start time, as stored in manifests."""
    now = datetime.now(UTC)
    return {
        "run_id": now.strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(4),
        "scored_at": now.isoformat(timespec="microseconds"),
    }


def output_names(
    input_columns: list[str],
    text_column: str,
    keep_text: bool,
    partition_keys: tuple[str, ...] = (),
    provenance: bool = False,
) -> dict[str, str]:
    """Input column -> its name in the output. Every kept input column survives under a unique name:
    one named like an output column, or like a partition key of the folders it is written into (a
    job's `date`, which readers would otherwise take from the folder name instead), gets `input_`
    prefixes until the name is free (so `row` and `input_row` both survive, as `input_input_row`
    and `input_row`)."""
    reserved = {*OUTPUT_COLUMNS, *partition_keys, *(PROVENANCE_COLUMNS if provenance else ())}
    kept = [c for c in input_columns if keep_text or c != text_column]
    taken = reserved | {c for c in kept if c not in reserved}
    names = {}
    for column in kept:
        name = column
        if column in reserved:
            while name in taken:
                name = f"input_{name}"
            taken.add(name)
        names[column] = name
    return names
