"""Streaming readers: Parquet and CSV (plain or gzip) as windows of record batches.

A window is the unit the pipeline tokenizes, buckets, scores and commits; memory
use is bounded by the window size, never by the file size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from batchscore.errors import InputError
from batchscore.io.paths import InputFile

_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowKeyError, OSError)
_GUESS_DELIMITERS = (";", "\t", "|")


@dataclass(frozen=True)
class ReadOptions:
    text_column: str = "text"
    window_rows: int = 16384
    csv_delimiter: str = ","


class ShardReader:
    """One input file: its schema (checked up front) and its rows as windows."""

    def __init__(self, source: InputFile, options: ReadOptions):
        self.source = source
        self.options = options
        self.num_rows: int | None = None  # known after schema() for Parquet

    def _fail(self, problem: str, err: Exception | None = None) -> InputError:
        detail = f": {err}" if err is not None else ""
        return InputError(f"{self.source}: {problem}{detail}")

    def _open_parquet(self) -> pq.ParquetFile:
        location = self.source.location
        try:
            if location.filesystem.get_file_info(location.path).size == 0:
                raise self._fail("empty file (0 bytes)")
            return pq.ParquetFile(location.filesystem.open_input_file(location.path))
        except _ARROW_ERRORS as err:
            raise self._fail("not a readable Parquet file (corrupt or truncated?)", err) from err

    def _open_csv(self, column_types: dict | None = None) -> pacsv.CSVStreamingReader:
        location = self.source.location
        try:
            if location.filesystem.get_file_info(location.path).size == 0:
                raise self._fail("empty file (0 bytes)")
            stream = location.filesystem.open_input_stream(location.path, compression="detect")
            return pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=1 << 22),
                parse_options=pacsv.ParseOptions(
                    delimiter=self.options.csv_delimiter, newlines_in_values=True
                ),
                convert_options=pacsv.ConvertOptions(column_types=column_types or {}, check_utf8=False),
            )
        except InputError:
            raise
        except _ARROW_ERRORS as err:
            raise self._fail("cannot read as CSV", err) from err

    def schema(self) -> pa.Schema:
        """Open the file and check it has the text column and at least one row."""
        if self.source.format == "parquet":
            parquet = self._open_parquet()
            schema = parquet.schema_arrow
            rows = self.num_rows = parquet.metadata.num_rows
        else:
            reader = self._open_csv()
            schema = reader.schema
            self._check_text_column(schema)
            rows = None
            try:
                rows = reader.read_next_batch().num_rows or None
            except StopIteration:
                rows = 0
            except _ARROW_ERRORS as err:
                raise self._fail("CSV parse error", err) from err
        self._check_text_column(schema)
        if rows == 0:
            raise self._fail("the file has no rows")
        return schema

    def _check_text_column(self, schema: pa.Schema) -> None:
        name = self.options.text_column
        if name in schema.names:
            return
        hint = ""
        if self.source.format == "csv" and len(schema.names) == 1:
            header = schema.names[0]
            for delimiter in _GUESS_DELIMITERS:
                if delimiter in header:
                    hint = f"; the header looks {delimiter!r}-delimited: pass --csv-delimiter {delimiter!r}"
                    break
        raise self._fail(f"no text column {name!r}; columns are {schema.names}{hint} (use --text-column)")

    def windows(self, skip_rows: int = 0) -> Iterator[pa.Table]:
        """Rows from `skip_rows` on, in windows of `window_rows` rows (the last may be shorter)."""
        batches = (
            self._parquet_batches(skip_rows)
            if self.source.format == "parquet"
            else self._csv_batches(skip_rows)
        )
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        window = self.options.window_rows
        saw_rows = skip_rows > 0
        try:
            for batch in batches:
                pending.append(batch)
                pending_rows += batch.num_rows
                while pending_rows >= window:
                    table = pa.Table.from_batches(pending)
                    yield table.slice(0, window)
                    rest = table.slice(window)
                    pending = rest.to_batches()
                    pending_rows = rest.num_rows
                    saw_rows = True
        except _ARROW_ERRORS as err:
            raise self._fail("read failed", err) from err
        if pending_rows:
            yield pa.Table.from_batches(pending)
            saw_rows = True
        if not saw_rows:
            raise self._fail("the file has no rows")

    def _parquet_batches(self, skip_rows: int) -> Iterator[pa.RecordBatch]:
        parquet = self._open_parquet()
        metadata = parquet.metadata
        first_group, skipped = 0, 0
        while first_group < metadata.num_row_groups:
            group_rows = metadata.row_group(first_group).num_rows
            if skipped + group_rows > skip_rows:
                break
            skipped += group_rows
            first_group += 1
        groups = list(range(first_group, metadata.num_row_groups))
        if not groups:
            return
        batches = parquet.iter_batches(batch_size=self.options.window_rows, row_groups=groups)
        try:
            yield from _drop_first(batches, skip_rows - skipped)
        except _ARROW_ERRORS as err:
            raise self._fail("not a readable Parquet file (corrupt or truncated?)", err) from err

    def _csv_batches(self, skip_rows: int) -> Iterator[pa.RecordBatch]:
        # The text column is read as bytes so one row of invalid UTF-8 becomes a row
        # error later instead of failing the whole file here.
        reader = self._open_csv({self.options.text_column: pa.binary()})
        try:
            yield from _drop_first(reader, skip_rows)
        except _ARROW_ERRORS as err:
            raise self._fail("CSV parse error", err) from err


def _drop_first(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """The batches without their first `rows` rows (those were committed before a resume)."""
    for batch in batches:
        if rows:
            cut = min(rows, batch.num_rows)
            batch, rows = batch.slice(cut), rows - cut
        if batch.num_rows:
            yield batch
