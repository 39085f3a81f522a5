"""Streaming readers: Parquet and CSV (plain or gzip) as windows of record batches.

A window is the unit the pipeline tokenizes, buckets, scores and commits; memory
use is bounded by the window size, never by the file size.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from batchscore.base.errors import InputError
from batchscore.io.console import printable
from batchscore.io.paths import InputFile
from batchscore.io.utf8 import decode_utf8

_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowKeyError, OSError)
_GUESS_DELIMITERS = (";", "\t", "|")
CSV_BLOCK_BYTES = 1 << 22  # grown (x4 per retry, up to _CSV_MAX_BLOCK) when one row is longer than a block
_CSV_MAX_BLOCK = 1 << 31
_HASH_CHUNK = 1 << 22


@dataclass(frozen=True)
class ReadOptions:
    text_column: str = "text"
    window_rows: int = 16384
    csv_delimiter: str = ","
    csv_infer_types: bool = False  # False: every CSV column but the text is read as a string, as written
    csv_block_bytes: int = CSV_BLOCK_BYTES  # bytes pyarrow parses at a time; smaller finds a bad row sooner


class ShardReader:
    """One input file: its schema (checked up front) and its rows as windows."""

    def __init__(self, source: InputFile, options: ReadOptions):
        self.source = source
        self.options = options
        self.num_rows: int | None = None  # known after schema() for Parquet
        self.replaced_utf8: Counter = Counter()  # column -> values whose invalid bytes became U+FFFD
        self._csv_names: list[str] | None = None
        self._odd_quotes: bool | None = None  # an odd count of quote characters; None: not counted yet
        self.seen: tuple[int | None, int | None] | None = None  # (size, mtime) when first checked

    def content_id(self) -> str:
        """A cheap identity of the file's bytes, for the resume fingerprint (size and mtime can lie).

        Local files and CSV anywhere: sha256 of the content (read at disk speed, far below the cost of
        scoring it). Parquet on remote stores: sha256 of the footer, which records every column
        chunk's offset, compressed size and statistics, so a rewrite changes it without a download.
        """
        location = self.source.location
        filesystem = location.filesystem
        try:
            if self.source.format == "parquet" and not isinstance(filesystem, pafs.LocalFileSystem):
                with filesystem.open_input_file(location.path) as handle:
                    size = handle.size()
                    handle.seek(max(0, size - 8))
                    footer_length = struct.unpack("<I", handle.read(8)[:4])[0] if size >= 8 else 0
                    handle.seek(max(0, size - 8 - footer_length))
                    return "footer-sha256:" + hashlib.sha256(handle.read()).hexdigest()
            digest = hashlib.sha256()
            quotes = 0
            count_quotes = self.source.format == "csv" and not location.path.lower().endswith(".gz")
            with filesystem.open_input_stream(location.path) as handle:
                while chunk := handle.read(_HASH_CHUNK):
                    digest.update(chunk)
                    if count_quotes:
                        quotes += chunk.count(b'"')
            if count_quotes:
                self._odd_quotes = bool(quotes % 2)
            return "sha256:" + digest.hexdigest()
        except OSError as err:
            raise self._fail("cannot read", err) from err

    def _compression(self) -> str | None:
        """gzip for a .gz name in any case (pyarrow's own detection knows the lower-case one only)."""
        return "gzip" if self.source.location.path.lower().endswith(".gz") else None

    def _fail(self, problem: str, err: Exception | None = None) -> InputError:
        detail = f": {printable(str(err), 300)}" if err is not None else ""  # pyarrow's words: foreign text
        return InputError(f"{self.source}: {problem}{detail}")

    def _open_parquet(self) -> pq.ParquetFile:
        location = self.source.location
        try:
            if location.filesystem.get_file_info(location.path).size == 0:
                raise self._fail("empty file (0 bytes)")
            return pq.ParquetFile(location.filesystem.open_input_file(location.path))
        except _ARROW_ERRORS as err:
            raise self._fail("not a readable Parquet file (corrupt or truncated?)", err) from err

    def _open_csv(
        self,
        column_types: dict | None,
        block_size: int,
        on_invalid_row: Callable[[pacsv.InvalidRow], str] | None = None,
    ) -> pacsv.CSVStreamingReader:
        """`on_invalid_row`: pyarrow's handler for a malformed row; given, the file is parsed on one
        thread, the only way pyarrow knows each row's number."""
        location = self.source.location
        try:
            if location.filesystem.get_file_info(location.path).size == 0:
                raise self._fail("empty file (0 bytes)")
            stream = location.filesystem.open_input_stream(location.path, compression=self._compression())
            return pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=block_size, use_threads=on_invalid_row is None),
                parse_options=pacsv.ParseOptions(
                    delimiter=self.options.csv_delimiter,
                    newlines_in_values=True,
                    invalid_row_handler=on_invalid_row,
                ),
                convert_options=pacsv.ConvertOptions(column_types=column_types or {}, check_utf8=False),
            )
        except InputError:
            raise
        except pa.ArrowInvalid as err:  # the first block is parsed on opening
            if "straddl" in str(err) and block_size < _CSV_MAX_BLOCK:  # a first row longer than a block
                return self._open_csv(column_types, block_size * 4, on_invalid_row)
            if on_invalid_row is not None:
                raise
            raise self._csv_parse_failure(column_types or {}, block_size, "cannot read as CSV", err) from err
        except _ARROW_ERRORS as err:
            raise self._fail("cannot read as CSV", err) from err

    def csv_column_types(self) -> dict[str, pa.DataType]:
        """The text column as bytes (a bad row becomes a row error, not a failed file) and, unless type
        inference is asked for, every other column as bytes too, decoded to strings as written:
        ids like 007 or 12345678901234567890 stay exact, and every shard of a run gets one schema."""
        if self.options.csv_infer_types:
            return {self.options.text_column: pa.binary()}
        return dict.fromkeys(self._csv_header(), pa.binary())

    def _csv_header(self) -> list[str]:
        """The CSV's column names, read once."""
        if self._csv_names is None:
            probe = self._open_csv({}, self.options.csv_block_bytes)
            self._csv_names = probe.schema.names
            probe.close()
        return self._csv_names

    def _observed(self) -> tuple[int | None, int | None]:
        info = self.source.location.filesystem.get_file_info(self.source.location.path)
        return info.size, info.mtime_ns

    def _require_unchanged(self, when: str) -> None:
        """The file scored is the file the preflight checked: replaced or rewritten since, it is
        refused (its columns could differ from the run's schema) instead of read."""
        try:
            now = self._observed()
        except OSError as err:
            raise self._fail(f"cannot read {when}", err) from err
        if self.seen is not None and now != self.seen:
            raise self._fail(
                f"changed {when} (size or modification time differs from the preflight's); not scored. "
                "Rerun once it is no longer being written"
            )

    def schema(self) -> pa.Schema:
        """Open the file and check it has the text column (zero data rows are fine)."""
        if self.seen is None:
            self.seen = self._observed()
        if self.source.format == "parquet":
            parquet = self._open_parquet()
            schema = parquet.schema_arrow
            self.num_rows = parquet.metadata.num_rows
            self._check_text_column(schema.names)
            return schema
        hint = self._delimiter_hint()
        if hint:  # before parsing: a mis-delimited file may not even parse (ragged rows)
            raise self._fail(
                f"no text column {self.options.text_column!r} with --csv-delimiter "
                f"{self.options.csv_delimiter!r}{hint}"
            )
        self._check_text_column(self._csv_header())
        first = next(self._csv_batches(0), None)  # parse errors in the first block fail the preflight
        return first.schema if first is not None else self._empty_csv().schema

    def _delimiter_hint(self) -> str:
        """Sniff the header line: if the text column is not a field with the given delimiter but is
        one with another common delimiter, say which to pass."""
        location = self.source.location
        try:
            with location.filesystem.open_input_stream(
                location.path, compression=self._compression()
            ) as stream:
                head = stream.read(1 << 16)
        except OSError:
            return ""
        header = head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
        fields = [f.strip().strip('"') for f in header.split(self.options.csv_delimiter)]
        if self.options.text_column in fields:
            return ""
        for delimiter in (*_GUESS_DELIMITERS, ","):
            names = [f.strip().strip('"') for f in header.split(delimiter)]
            if delimiter != self.options.csv_delimiter and self.options.text_column in names:
                return f"; the header looks {delimiter!r}-delimited: pass --csv-delimiter {delimiter!r}"
        return ""

    def _check_text_column(self, names: list[str]) -> None:
        name = self.options.text_column
        if name not in names:
            raise self._fail(f"no text column {name!r}; columns are {names} (use --text-column)")

    def windows(self, skip_rows: int = 0) -> Iterator[pa.Table]:
        """Rows from `skip_rows` on, in windows of `window_rows` rows (the last may be shorter)."""
        batches = (
            self._parquet_batches(skip_rows)
            if self.source.format == "parquet"
            else self._csv_batches(skip_rows)
        )
        self._require_unchanged("since the preflight")
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        window = self.options.window_rows
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
        except _ARROW_ERRORS as err:
            raise self._fail("read failed", err) from err
        self._require_unchanged("while it was read")
        if pending_rows:
            yield pa.Table.from_batches(pending)

    def empty_table(self) -> pa.Table:
        """No rows, with the columns and types a window of this file has (for zero-row inputs)."""
        if self.source.format == "parquet":
            return self.repair_strings(self._open_parquet().schema_arrow.empty_table())
        return self._empty_csv()

    def _empty_csv(self) -> pa.Table:
        """A header-only CSV: text as bytes (as the reader gives it), every other column as strings."""
        text = self.options.text_column
        return pa.table(
            {n: pa.array([], pa.binary() if n == text else pa.string()) for n in self._csv_header()}
        )

    def repair_strings(self, batch: pa.RecordBatch | pa.Table):
        """Non-text columns as valid UTF-8: CSV bytes decoded, and any invalid byte in any string column
        replaced by U+FFFD (counted in `replaced_utf8`), so every output is readable by pandas/DuckDB."""
        columns = list(batch.columns)
        changed = False
        for i, field in enumerate(batch.schema):
            if field.name == self.options.text_column:
                continue
            type_ = field.type
            binary_csv = self.source.format == "csv" and pa.types.is_binary(type_)
            if not (binary_csv or pa.types.is_string(type_) or pa.types.is_large_string(type_)):
                continue
            column = columns[i]
            array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
            strings, replaced = decode_utf8(array, replace=True)
            if replaced:
                self.replaced_utf8[field.name] += replaced
            if binary_csv or replaced:
                columns[i] = strings
                changed = True
        if not changed:
            return batch
        names = batch.schema.names
        if isinstance(batch, pa.Table):
            return pa.table(dict(zip(names, columns, strict=True)))
        return pa.RecordBatch.from_arrays(columns, names=names)

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
            for batch in _drop_first(batches, skip_rows - skipped):
                yield self.repair_strings(batch)
        except _ARROW_ERRORS as err:
            raise self._fail("not a readable Parquet file (corrupt or truncated?)", err) from err

    def _csv_batches(self, skip_rows: int) -> Iterator[pa.RecordBatch]:
        types = self.csv_column_types()
        block, emitted = self.options.csv_block_bytes, 0
        while True:
            reader = self._open_csv(types, block)
            try:
                for batch in _drop_first(reader, skip_rows + emitted):
                    self._check_quotes_closed(batch, skip_rows + emitted)
                    emitted += batch.num_rows
                    yield self.repair_strings(batch)
                return
            except pa.ArrowInvalid as err:
                # A row longer than a block: read again with bigger blocks, after the rows already given.
                if "straddl" not in str(err) or block >= _CSV_MAX_BLOCK:
                    raise self._csv_parse_failure(
                        types, block, f"CSV parse error after row {skip_rows + emitted:,}", err
                    ) from err
                block *= 4
            except _ARROW_ERRORS as err:
                raise self._csv_parse_failure(
                    types, block, f"CSV parse error after row {skip_rows + emitted:,}", err
                ) from err
            finally:
                reader.close()

    def _has_odd_quotes(self) -> bool:
        """Counted while hashing a plain CSV (content_id), else here, in one pass over the text."""
        if self._odd_quotes is None:
            location = self.source.location
            quotes = 0
            try:
                with location.filesystem.open_input_stream(
                    location.path, compression=self._compression()
                ) as handle:
                    while chunk := handle.read(_HASH_CHUNK):
                        quotes += chunk.count(b'"')
            except _ARROW_ERRORS as err:
                raise self._fail("cannot read", err) from err
            self._odd_quotes = bool(quotes % 2)
        return self._odd_quotes

    def _check_quotes_closed(self, batch: pa.RecordBatch, first_row: int) -> None:
        """A quote opened and never closed makes its field run on to the next quote character,
        swallowing the lines between into one row: rows lost without a parse error. Seen as an odd
        number of quote characters in the file together with a value holding a line break (a stray
        quote inside an unquoted field, `12" pizza`, is odd too, but merges nothing)."""
        if not self._has_odd_quotes():
            return
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            if not (pa.types.is_binary(column.type) or pa.types.is_string(column.type)):
                continue
            broken = pc.match_substring(column, "\n")
            if pc.any(broken).as_py():
                row = first_row + int(pc.index(broken, True).as_py())
                raise self._fail(
                    f"row {row:,} (counted from 0 after the header, like the output's row column; column "
                    f"{name!r}): a quoted field is not closed where its line ends and "
                    "the file has an odd number of quote characters, so lines after it were read into "
                    "this row; fix the quoting"
                )

    def _csv_parse_failure(self, types: dict, block: int, problem: str, err: Exception) -> InputError:
        """The error for a CSV that stopped parsing, naming the malformed row when there is one
        (else `problem` and pyarrow's message).

        The fast, multi-threaded reader does not know row numbers, so this (failure-only) path reads
        the file again on one thread and lets pyarrow's invalid-row handler say which row it is.
        """
        first_invalid = FirstInvalidRow()
        # pyarrow decodes a malformed row as UTF-8 before it calls the handler; for a row that is not
        # UTF-8 that fails inside pyarrow, which would print the traceback itself: kept quiet here,
        # the message then names the file and pyarrow's words (the row's text, without its number).
        previous_hook, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None
        try:
            reader = self._open_csv(types, block, on_invalid_row=first_invalid)
            try:
                for _ in reader:
                    pass
            finally:
                reader.close()
        except (*_ARROW_ERRORS, InputError):
            pass
        finally:
            sys.unraisablehook = previous_hook
        located = first_invalid.describe()
        return self._fail(located) if located else self._fail(problem, err)


class FirstInvalidRow:
    """A pyarrow `invalid_row_handler` that keeps the first malformed CSV row and stops the parse
    there (pyarrow numbers rows only when it parses on one thread)."""

    def __init__(self) -> None:
        self.row: pacsv.InvalidRow | None = None

    def __call__(self, row: pacsv.InvalidRow) -> str:
        self.row = self.row or row
        return "error"

    def describe(self) -> str | None:
        """The row in the terms of batchscore's output (0-based `row` after the header) and of the
        file (pyarrow's record number, the header being record 1)."""
        row = self.row
        if row is None or row.number is None:
            return None
        return (
            f"CSV parse error in row {row.number - 2:,} (counted from 0 after the header, like the "
            f"output's row column; record {row.number} of the file): expected "
            f"{row.expected_columns} columns, got {row.actual_columns}: {row.text[:200]!r}"
        )


def _drop_first(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """The batches without their first `rows` rows (those were committed before a resume)."""
    for batch in batches:
        if rows:
            cut = min(rows, batch.num_rows)
            batch, rows = batch.slice(cut), rows - cut
        if batch.num_rows:
            yield batch
