"""The scoring job: read -> tokenize -> bucket -> forward -> restore order -> write.

Three stages run at once so the host never waits on itself: a reader thread
reads and encodes the next window, the calling thread runs the model, and a
writer thread builds and commits the previous window's output. Queues between
them are short, so memory stays bounded by a few windows whatever the input size.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from batchscore import __version__
from batchscore.batching import BucketSpec
from batchscore.bundle import Bundle
from batchscore.encoding import Encoded, encode
from batchscore.errors import ErrorRateExceeded, InputError, Interrupted, OutputError
from batchscore.io.paths import InputFile, Location, discover_inputs, plan_outputs
from batchscore.io.readers import ReadOptions, ShardReader
from batchscore.io.writers import PartWriter, read_columns, read_file_metadata
from batchscore.report import ProgressListener, RunSummary
from batchscore.runtime import enable_compilation_cache, pick_device
from batchscore.scoring import Scorer, Truncation, softmax
from batchscore.text import TokenizerConfig
from batchscore.validation import clean_texts, mark_empty
from batchscore.vocab import Vocab

OUTPUT_COLUMNS = ("row", "label", "prob_positive", "prob_negative", "n_tokens", "truncated", "error")
SUMMARY_COLUMNS = ["label", "prob_positive", "n_tokens", "truncated", "error"]  # what RunSummary counts


@dataclass(frozen=True)
class RunOptions:
    text_column: str = "text"
    id_column: str | None = None
    keep_text: bool = False
    max_tokens: int | None = None  # None: the bundle's
    buckets: BucketSpec = field(default_factory=BucketSpec)
    window_rows: int = 16384
    csv_delimiter: str = ","
    device: str = "auto"
    overwrite: bool = False
    resume: bool = False
    skip_bad_files: bool = False
    max_error_rate: float = 0.05


@dataclass
class Window:
    index: int
    first_row: int
    table: pa.Table
    texts: pa.Array
    reasons: np.ndarray
    encoded: Encoded
    logits: np.ndarray | None = None


class ScoringJob:
    """Scores input shards into output shards with one loaded model."""

    def __init__(
        self,
        bundle: Bundle,
        options: RunOptions,
        progress: ProgressListener | None = None,
        log: Callable[[str], None] = lambda message: None,
    ):
        self.bundle = bundle
        self.options = options
        self.progress = progress or ProgressListener()
        self.log = log
        max_tokens = options.max_tokens or bundle.max_tokens
        head = (
            min(bundle.head_tokens, max_tokens // 4) if max_tokens < bundle.max_tokens else bundle.head_tokens
        )
        self.truncation = Truncation(max_tokens, head)
        enable_compilation_cache()
        self.scorer = Scorer(
            bundle.model, bundle.params, self.truncation, options.buckets, pick_device(options.device)
        )
        self.read_options = ReadOptions(options.text_column, options.window_rows, options.csv_delimiter)

    # ---- planning -------------------------------------------------------------------------
    def run(
        self, inputs: list[str], output: str | None, filesystem: pafs.FileSystem | None = None
    ) -> RunSummary:
        started = time.perf_counter()
        files = discover_inputs(inputs, filesystem)
        single = len(inputs) == 1 and _names_one_file(inputs[0], files)
        targets = plan_outputs(files, output, single, filesystem)
        summary = RunSummary(model={"name": self.bundle.name, "weights_sha256": self.bundle.weights_sha256})
        good = self._preflight(files, targets, summary)
        for source, target in good:
            self._score_file(source, target, summary)
        summary.seconds = time.perf_counter() - started
        if summary.error_rate > self.options.max_error_rate:
            raise ErrorRateExceeded(
                f"{summary.error_rows:,} of {summary.rows:,} rows ({summary.error_rate:.2%}) could not be "
                f"scored, above --max-error-rate {self.options.max_error_rate:.2%}; see the 'error' column",
            )
        return summary

    def _preflight(
        self, files: list[InputFile], targets: list[Location], summary: RunSummary
    ) -> list[tuple[InputFile, Location]]:
        """Open every input before scoring any, so a bad shard fails the job in seconds, not hours."""
        good: list[tuple[InputFile, Location, pa.Schema]] = []
        row_counts: list[int | None] = []
        for source, target in zip(files, targets, strict=True):
            try:
                reader = ShardReader(source, self.read_options)
                schema = reader.schema()
                if good and set(schema.names) != set(good[0][2].names):
                    first = good[0]
                    raise InputError(
                        f"{source}: columns {sorted(schema.names)} differ from {first[0]}'s "
                        f"{sorted(first[2].names)}; shards of one run must share a schema"
                    )
                if self.options.id_column and self.options.id_column not in schema.names:
                    raise InputError(
                        f"{source}: no id column {self.options.id_column!r}; columns are {schema.names}"
                    )
            except InputError as err:
                if not self.options.skip_bad_files or len(files) == 1:
                    raise
                summary.bad_files.append(str(err))
                self.log(f"skipping bad file: {err}")
                continue
            good.append((source, target, schema))
            row_counts.append(reader.num_rows)
        if not good:
            raise InputError("no readable input files: " + "; ".join(summary.bad_files))
        known = None if None in row_counts else sum(row_counts)
        self.progress.planned(len(good), known)
        return [(s, t) for s, t, _ in good]

    def _fingerprint(self, source: InputFile) -> dict[str, str]:
        info = source.location.filesystem.get_file_info(source.location.path)
        return {
            "input": source.location.path,
            "input_size": str(info.size),
            "input_mtime_ns": str(info.mtime_ns),
            "weights_sha256": self.bundle.weights_sha256,
            "text_column": self.options.text_column,
            "id_column": self.options.id_column or "",
            "keep_text": str(self.options.keep_text),
            "max_tokens": str(self.truncation.max_tokens),
        }

    # ---- one file -------------------------------------------------------------------------
    def _score_file(self, source: InputFile, target: Location, summary: RunSummary) -> None:
        fingerprint = self._fingerprint(source)
        writer = PartWriter(target, fingerprint)
        if target.exists():
            done = read_file_metadata(target).get("fingerprint") == json.dumps(fingerprint)
            if self.options.resume and done:
                scores = read_columns(target, SUMMARY_COLUMNS)
                summary.add_rows(scores)
                summary.files_skipped_done += 1
                self.progress.rows(scores.num_rows)
                self.progress.file_done()
                summary.outputs.append(target.uri)
                self.log(f"{target.uri}: already complete, skipped")
                return
            if not (self.options.overwrite or self.options.resume):
                raise OutputError(f"{target.uri} already exists; pass --overwrite to replace it or --resume")
        if writer.has_partial() and not self.options.resume:
            if not self.options.overwrite:
                raise OutputError(
                    f"{target.uri}: partial output of an interrupted run is present; "
                    "pass --resume to continue it or --overwrite to start again"
                )
            writer.discard()
        committed = writer.resume() if self.options.resume else writer.progress
        if committed.rows_done:
            self.log(f"{source}: resuming after {committed.rows_done:,} committed rows")
            self.progress.rows(committed.rows_done)
        reader = ShardReader(source, self.read_options)
        if not committed.complete:
            self._stream(reader, writer, committed.rows_done, summary)
            writer.mark_complete()
        metadata = {
            "model_name": self.bundle.name,
            "weights_sha256": self.bundle.weights_sha256,
            "version": __version__,
            "scored_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "input": source.location.uri,
            "text_column": self.options.text_column,
            "fingerprint": json.dumps(fingerprint),
        }
        writer.assemble(metadata)
        self.progress.file_done()
        summary.files_scored += 1
        summary.outputs.append(target.uri)

    def _stream(self, reader: ShardReader, writer: PartWriter, skip_rows: int, summary: RunSummary) -> None:
        stop = threading.Event()
        encoded_q: queue.Queue = queue.Queue(maxsize=2)
        scored_q: queue.Queue = queue.Queue(maxsize=2)
        failures: list[BaseException] = []
        stages = summary.stage_seconds

        def produce() -> None:
            try:
                for window in self._prepare(reader.windows(skip_rows), skip_rows, stages):
                    if not _put(encoded_q, window, stop):
                        return
            except BaseException as err:  # handed to the main thread
                failures.append(err)
            finally:
                _put(encoded_q, None, stop)

        def consume() -> None:
            try:
                while True:
                    window = scored_q.get()
                    if window is None:
                        return
                    started = time.perf_counter()
                    table = self._output_table(window, summary)
                    writer.write_part(table)
                    stages["write"] += time.perf_counter() - started
                    self.progress.rows(window.table.num_rows)
            except BaseException as err:
                failures.append(err)
                stop.set()

        threads = [
            threading.Thread(target=produce, daemon=True),
            threading.Thread(target=consume, daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            while True:
                window = _get(encoded_q, stop)
                if window is None or stop.is_set():
                    break
                started = time.perf_counter()
                ok = np.flatnonzero(window.reasons == None)  # noqa: E711
                window.logits = self.scorer.logits(window.encoded, ok)
                stages["forward"] += time.perf_counter() - started
                if not _put(scored_q, window, stop):
                    break
        except KeyboardInterrupt as err:
            stop.set()
            _finish_writer(scored_q, threads[1])
            raise Interrupted(
                f"interrupted; {writer.progress.rows_done:,} rows of {reader.source} are committed. "
                "Run the same command with --resume to continue."
            ) from err
        finally:
            _finish_writer(scored_q, threads[1])
            stop.set()
        if failures:
            raise failures[0]

    def _prepare(self, windows: Iterator[pa.Table], first_row: int, stages: dict) -> Iterator[Window]:
        index = 0
        while True:
            started = time.perf_counter()
            table = next(windows, None)
            stages["read"] += time.perf_counter() - started
            if table is None:
                return
            started = time.perf_counter()
            texts, reasons, encoded = encode_window(
                table, self.options.text_column, self.bundle.vocab, self.bundle.tokenizer
            )
            stages["tokenize"] += time.perf_counter() - started
            yield Window(index, first_row, table, texts, reasons, encoded)
            first_row += table.num_rows
            index += 1

    def _output_table(self, window: Window, summary: RunSummary) -> pa.Table:
        n = window.table.num_rows
        ok = window.reasons == None  # noqa: E711
        probs = softmax(window.logits, self.bundle.temperature)
        prob_pos = np.zeros(n, np.float64)
        prob_pos[ok] = probs[:, 1]
        positive = prob_pos >= 0.5
        negative_name, positive_name = self.bundle.labels
        labels = np.where(positive, positive_name, negative_name).astype(object)
        labels[~ok] = None
        n_tokens = window.encoded.n_tokens
        truncated = n_tokens > self.truncation.max_tokens
        text_invalid = window.texts.is_null().to_numpy(zero_copy_only=False)

        columns: dict[str, pa.Array] = {}
        if not self.options.id_column:
            columns["row"] = pa.array(np.arange(window.first_row, window.first_row + n, dtype=np.int64))
        for name in window.table.column_names:
            if name == self.options.text_column:
                if self.options.keep_text:
                    columns[name] = window.texts
                continue
            out_name = f"input_{name}" if name in OUTPUT_COLUMNS else name
            if out_name != name and name not in summary.renamed_columns:
                summary.renamed_columns.append(name)
            columns[out_name] = window.table.column(name)
        mask = ~ok
        columns["label"] = pa.array(labels, pa.string())
        columns["prob_positive"] = pa.array(prob_pos.astype(np.float32), mask=mask)
        columns["prob_negative"] = pa.array((1.0 - prob_pos).astype(np.float32), mask=mask)
        columns["n_tokens"] = pa.array(n_tokens, pa.int32(), mask=text_invalid)
        columns["truncated"] = pa.array(truncated, pa.bool_(), mask=text_invalid)
        columns["error"] = pa.array(window.reasons, pa.string())

        table = pa.table(columns)
        summary.add_rows(table)
        return table


def encode_window(
    table: pa.Table, text_column: str, vocab: Vocab, tokenizer: TokenizerConfig
) -> tuple[pa.Array, np.ndarray, Encoded]:
    """Clean the text column, tokenize it and flag rows that cannot be scored (shared by all engines)."""
    texts, reasons = clean_texts(table.column(text_column))
    encoded = encode(texts, vocab, tokenizer)
    mark_empty(reasons, encoded.n_tokens)
    return texts, reasons, encoded


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        try:
            return q.get(timeout=0.2)
        except queue.Empty:
            if stop.is_set():
                return None


def _finish_writer(scored_q: queue.Queue, writer: threading.Thread) -> None:
    """Let the writer commit what it already holds, then stop it."""
    while writer.is_alive():
        try:
            scored_q.put(None, timeout=0.2)
            break
        except queue.Full:
            continue
    writer.join()


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put unless the job is stopping; False when it is."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def _names_one_file(spec: str, files: list[InputFile]) -> bool:
    """Whether the single INPUT the user gave is one file (not a directory or a glob)."""
    if any(ch in spec for ch in "*?["):
        return False
    return len(files) == 1 and files[0].location.uri == spec
