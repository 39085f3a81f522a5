"""Streaming readers: Parquet and CSV (plain or gzip, parsed by io.csv_files) as windows of record
batches.

A window is the unit the pipeline tokenizes, buckets, scores and commits; memory
use is bounded by the window size, never by the file size.
"""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from batchscore.base.errors import InputError
from batchscore.io.csv_files import (
    ARROW_ERRORS,
    CSV_BLOCK_BYTES,
    HASH_CHUNK,
    CsvFile,
    drop_first,
    file_error,
)
from batchscore.io.paths import InputFile
from batchscore.io.utf8 import decode_utf8


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
        self._csv = CsvFile(source, options) if source.format == "csv" else None
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
                while chunk := handle.read(HASH_CHUNK):
                    digest.update(chunk)
                    if count_quotes:
                        quotes += chunk.count(b'"')
            if count_quotes:
                self._csv.odd_quotes = bool(quotes % 2)
            return "sha256:" + digest.hexdigest()
        except OSError as err:
            raise self._fail("cannot read", err) from err

    def _fail(self, problem: str, err: Exception | None = None) -> InputError:
        return file_error(self.source, problem, err)

    def _csv_batches(self, skip_rows: int) -> Iterator[pa.RecordBatch]:
        for batch in self._csv.batches(skip_rows):
            yield self.repair_strings(batch)

    def _open_parquet(self) -> pq.ParquetFile:
        location = self.source.location
        try:
            if location.filesystem.get_file_info(location.path).size == 0:
                raise self._fail("empty file (0 bytes)")
            return pq.ParquetFile(location.filesystem.open_input_file(location.path))
        except ARROW_ERRORS as err:
            raise self._fail("not a readable Parquet file (corrupt or truncated?)", err) from err

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
        hint = self._csv.delimiter_hint()
        if hint:  # before parsing: a mis-delimited file may not even parse (ragged rows)
            raise self._fail(
                f"no text column {self.options.text_column!r} with --csv-delimiter "
                f"{self.options.csv_delimiter!r}{hint}"
            )
        self._check_text_column(self._csv.header())
        first = next(self._csv_batches(0), None)  # parse errors in the first block fail the preflight
        return first.schema if first is not None else self._csv.empty_table().schema

    def _check_text_column(self, names: list[str]) -> None:
        name = self.options.text_column
        if name not in names:
            raise self._fail(f"no text column {name!r}; columns are {names} (use --text-column)")

    def windows(self, skip_rows: int = 0, first_rows: int = 0) -> Iterator[pa.Table]:
        """Rows from `skip_rows` on, in windows of `window_rows` rows (the last may be shorter); with
        `first_rows`, the first window holds at most that many."""
        batches = (
            self._parquet_batches(skip_rows)
            if self.source.format == "parquet"
            else self._csv_batches(skip_rows)
        )
        self._require_unchanged("since the preflight")
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        window = min(first_rows, self.options.window_rows) if first_rows > 0 else self.options.window_rows
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
                    window = self.options.window_rows
        except ARROW_ERRORS as err:
            raise self._fail("read failed", err) from err
        self._require_unchanged("while it was read")
        if pending_rows:
            yield pa.Table.from_batches(pending)

    def empty_table(self) -> pa.Table:
        """No rows, with the columns and types a window of this file has (for zero-row inputs)."""
        if self.source.format == "parquet":
            return self.repair_strings(self._open_parquet().schema_arrow.empty_table())
        return self._csv.empty_table()

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
            for batch in drop_first(batches, skip_rows - skipped):
                yield self.repair_strings(batch)
        except ARROW_ERRORS as err:
            raise self._fail("not a readable Parquet file (corrupt or truncated?)", err) from err
