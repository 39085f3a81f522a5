"""CSV files (plain or gzip) as record batches, as pyarrow parses them: the header, the delimiter
hint, blocks grown for long rows, unclosed quotes found, and the malformed row named by number."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from batchscore.base.errors import InputError
from batchscore.io.console import printable
from batchscore.io.paths import InputFile

ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowKeyError, OSError)
_GUESS_DELIMITERS = (";", "\t", "|")
CSV_BLOCK_BYTES = 1 << 22  # grown (x4 per retry, up to _CSV_MAX_BLOCK) when one row is longer than a block
_CSV_MAX_BLOCK = 1 << 31
HASH_CHUNK = 1 << 22


def file_error(source: InputFile, problem: str, err: Exception | None = None) -> InputError:
    """`source: problem: pyarrow's words` (foreign text, shown escaped and cut)."""
    detail = f": {printable(str(err), 300)}" if err is not None else ""
    return InputError(f"{source}: {problem}{detail}")


class CsvFile:
    """One CSV input, parsed as its ShardReader's options say; batches come out as parsed (text as
    bytes), the reader repairs strings and cuts windows."""

    def __init__(self, source: InputFile, options) -> None:
        self.source = source
        self.options = options  # readers.ReadOptions
        self._names: list[str] | None = None
        self.odd_quotes: bool | None = None  # an odd count of quote characters; None: not counted yet

    def compression(self) -> str | None:
        """gzip for a .gz name in any case (pyarrow's own detection knows the lower-case one only)."""
        return "gzip" if self.source.location.path.lower().endswith(".gz") else None

    def open(
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
                raise file_error(self.source, "empty file (0 bytes)")
            stream = location.filesystem.open_input_stream(location.path, compression=self.compression())
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
                return self.open(column_types, block_size * 4, on_invalid_row)
            if on_invalid_row is not None:
                raise
            raise self._parse_failure(column_types or {}, block_size, "cannot read as CSV", err) from err
        except ARROW_ERRORS as err:
            raise file_error(self.source, "cannot read as CSV", err) from err

    def column_types(self) -> dict[str, pa.DataType]:
        """The text column as bytes (a bad row becomes a row error, not a failed file) and, unless type
        inference is asked for, every other column as bytes too, decoded to strings as written:
        ids like 007 or 12345678901234567890 stay exact, and every shard of a run gets one schema."""
        if self.options.csv_infer_types:
            return {self.options.text_column: pa.binary()}
        return dict.fromkeys(self.header(), pa.binary())

    def header(self) -> list[str]:
        """The CSV's column names, read once."""
        if self._names is None:
            probe = self.open({}, self.options.csv_block_bytes)
            self._names = probe.schema.names
            probe.close()
        return self._names

    def delimiter_hint(self) -> str:
        """Sniff the header line: if the text column is not a field with the given delimiter but is
        one with another common delimiter, say which to pass."""
        location = self.source.location
        try:
            with location.filesystem.open_input_stream(
                location.path, compression=self.compression()
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

    def empty_table(self) -> pa.Table:
        """A header-only CSV: text as bytes (as the reader gives it), every other column as strings."""
        text = self.options.text_column
        return pa.table({n: pa.array([], pa.binary() if n == text else pa.string()) for n in self.header()})

    def batches(self, skip_rows: int) -> Iterator[pa.RecordBatch]:
        types = self.column_types()
        block, emitted = self.options.csv_block_bytes, 0
        while True:
            reader = self.open(types, block)
            try:
                for batch in drop_first(reader, skip_rows + emitted):
                    self._check_quotes_closed(batch, skip_rows + emitted)
                    emitted += batch.num_rows
                    yield batch
                return
            except pa.ArrowInvalid as err:
                # A row longer than a block: read again with bigger blocks, after the rows already given.
                if "straddl" not in str(err) or block >= _CSV_MAX_BLOCK:
                    raise self._parse_failure(
                        types, block, f"CSV parse error after row {skip_rows + emitted:,}", err
                    ) from err
                block *= 4
            except ARROW_ERRORS as err:
                raise self._parse_failure(
                    types, block, f"CSV parse error after row {skip_rows + emitted:,}", err
                ) from err
            finally:
                reader.close()

    def _has_odd_quotes(self) -> bool:
        """Counted while hashing a plain CSV (content_id), else here, in one pass over the text."""
        if self.odd_quotes is None:
            location = self.source.location
            quotes = 0
            try:
                with location.filesystem.open_input_stream(
                    location.path, compression=self.compression()
                ) as handle:
                    while chunk := handle.read(HASH_CHUNK):
                        quotes += chunk.count(b'"')
            except ARROW_ERRORS as err:
                raise file_error(self.source, "cannot read", err) from err
            self.odd_quotes = bool(quotes % 2)
        return self.odd_quotes

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
                raise file_error(
                    self.source,
                    f"row {row:,} (counted from 0 after the header, like the output's row column; column "
                    f"{name!r}): a quoted field is not closed where its line ends and "
                    "the file has an odd number of quote characters, so lines after it were read into "
                    "this row; fix the quoting",
                )

    def _parse_failure(self, types: dict, block: int, problem: str, err: Exception) -> InputError:
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
            reader = self.open(types, block, on_invalid_row=first_invalid)
            try:
                for _ in reader:
                    pass
            finally:
                reader.close()
        except (*ARROW_ERRORS, InputError):
            pass
        finally:
            sys.unraisablehook = previous_hook
        located = first_invalid.describe()
        return file_error(self.source, located) if located else file_error(self.source, problem, err)


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


def drop_first(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """The batches without their first `rows` rows (those were committed before a resume)."""
    for batch in batches:
        if rows:
            cut = min(rows, batch.num_rows)
            batch, rows = batch.slice(cut), rows - cut
        if batch.num_rows:
            yield batch
