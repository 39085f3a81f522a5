"""The scoring job: read -> tokenize -> bucket -> forward -> restore order -> write.

Three stages run at once so the host never waits on itself: a reader thread
reads and encodes the next window, the calling thread runs the model, and a
writer thread builds and commits the previous window's output. Queues between
them are short, so memory stays bounded by a few windows whatever the input size.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from batchscore import __version__, interrupts
from batchscore.batching import GPU_BUCKETS, BucketSpec
from batchscore.bundle import Bundle
from batchscore.drift import DriftPolicy, Profile, compare, should_fail
from batchscore.encoding import Encoded, encode
from batchscore.errors import (
    DriftAlert,
    ErrorRateExceeded,
    InputError,
    Interrupted,
    OutputError,
    UsageError,
)
from batchscore.io.paths import (
    InputFile,
    Location,
    check_outputs_are_not_inputs,
    check_outputs_are_not_listed_inputs,
    discover_inputs,
    is_pattern,
    plan_outputs,
)
from batchscore.io.readers import ReadOptions, ShardReader
from batchscore.io.writers import (
    OutputLock,
    PartWriter,
    batchscore_metadata,
    read_columns,
    read_file_metadata,
)
from batchscore.model import PRECISIONS
from batchscore.report import ProgressListener, RunSummary
from batchscore.runtime import DEVICES, choose_precision, enable_compilation_cache, pick_devices
from batchscore.scoring import Scorer, Truncation, is_positive, softmax
from batchscore.text import TokenizerConfig
from batchscore.validation import clean_texts, mark_empty
from batchscore.vocab import Vocab

OUTPUT_COLUMNS = ("row", "label", "prob_positive", "prob_negative", "n_tokens", "truncated", "error")
# which model scored a row, and in which run: plain columns, so Spark, DuckDB and pandas need no metadata API
PROVENANCE_COLUMNS = ("model", "model_sha256", "run_id", "scored_at")
SUMMARY_COLUMNS = ["label", "prob_positive", "n_tokens", "truncated", "error"]  # what RunSummary counts


@dataclass(frozen=True)
class RunOptions:
    text_column: str = "text"
    id_column: str | None = None
    keep_text: bool = False
    max_tokens: int | None = None  # None: the bundle's
    buckets: BucketSpec = field(default_factory=BucketSpec)
    window_rows: int = 16384
    host_workers: int | None = None  # threads that tokenize and pad; None: the machine's cores
    csv_delimiter: str = ","
    device: str = "auto"
    overwrite: bool = False
    resume: bool = False
    skip_bad_files: bool = False
    max_error_rate: float = 0.05
    csv_infer_types: bool = False
    precision: str = "float32"  # or "bfloat16": opt-in, see README "Precision"
    drift: DriftPolicy = field(default_factory=DriftPolicy)
    command: str = ""  # recorded in the output lock, so a second run can say who holds it
    resume_hint: str = interrupts.RESUME_HINT  # what an interrupted run tells the operator to do
    partition_keys: tuple[str, ...] = ()  # Hive keys of the folders written into (a job's "date")
    provenance: bool = True  # the PROVENANCE_COLUMNS in every output

    def __post_init__(self) -> None:
        """Reject values that would otherwise fail late, loop, or silently change the scores."""
        problems = []
        if self.max_tokens is not None and (isinstance(self.max_tokens, bool) or self.max_tokens < 1):
            problems.append(f"max_tokens must be at least 1 (got {self.max_tokens!r})")
        if self.host_workers is not None and self.host_workers < 1:
            problems.append(f"host_workers must be at least 1 (got {self.host_workers!r})")
        if self.window_rows < 1:
            problems.append(f"window_rows must be at least 1 (got {self.window_rows!r})")
        if self.buckets.token_budget < 1 or self.buckets.max_rows < 1:
            problems.append(
                f"batch_tokens and max_batch_rows must be at least 1 "
                f"(got {self.buckets.token_budget!r}, {self.buckets.max_rows!r})"
            )
        if not 0.0 <= self.max_error_rate <= 1.0:  # also rejects NaN
            problems.append(f"max_error_rate must be between 0 and 1 (got {self.max_error_rate!r})")
        if len(self.csv_delimiter) != 1:
            problems.append(f"csv_delimiter must be one character (got {self.csv_delimiter!r})")
        if self.device not in DEVICES:
            problems.append(f"device must be one of {DEVICES} (got {self.device!r})")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS} (got {self.precision!r})")
        if self.overwrite and self.resume:
            problems.append("overwrite and resume exclude each other")
        if self.id_column is not None and self.id_column == self.text_column and not self.keep_text:
            # the output drops the text column, and an id column replaces `row`: no way back to the input
            problems.append(
                f"id_column {self.id_column!r} is the text column, which the output leaves out: "
                "name another id column, or add --keep-text"
            )
        problems += self.drift.problems()
        if problems:
            raise UsageError("; ".join(problems))


@dataclass
class FileTask:
    """One output being written: its input, lock, writer, and where its rows start."""

    source: InputFile
    target: Location
    reader: ShardReader
    writer: PartWriter
    lock: OutputLock
    fingerprint: dict[str, str]
    skip_rows: int = 0  # committed by an earlier run
    complete_before: bool = False  # the output is already complete: nothing to do
    assemble_only: bool = False  # every row was committed; only the final file is missing
    finished: bool = False
    profile: Profile | None = None  # of every committed row of this output, resumed ones included

    @property
    def run(self) -> dict:
        """run_id and scored_at of the run that started this output (kept in its manifest)."""
        return self.writer.progress.run


@dataclass
class Window:
    index: int
    first_row: int
    table: pa.Table
    texts: pa.Array
    reasons: np.ndarray
    encoded: Encoded
    logits: np.ndarray | None = None
    task: FileTask | None = None  # whose rows these are (one stream carries many files)


@dataclass
class FileEvent:
    """In the stream after a file's rows: "end" (assemble it), "skip" (already complete), "bad"."""

    kind: str
    task: FileTask
    detail: str = ""


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
        self.devices: list = []
        self.buckets = options.buckets
        # tokenizing and padding run in these threads (they release the GIL in Arrow and NumPy)
        self.host_workers = options.host_workers or os.cpu_count() or 1
        self.host_pool = ThreadPoolExecutor(self.host_workers, "batchscore-host")
        self.precision, self.compute = self._plan_compute()
        self.scorer = self._make_scorer()
        self.read_options = ReadOptions(
            options.text_column, options.window_rows, options.csv_delimiter, options.csv_infer_types
        )
        self.input_types: dict[str, pa.DataType] = {}  # one type per input column across all shards
        self.run_record = new_run_record()  # renewed by each run()
        self._preflight_seen: dict[str, tuple] = {}  # path -> (size, mtime) the preflight checked
        self.summary: RunSummary | None = None  # the current or last run's

    def _plan_compute(self) -> tuple[str, str]:
        """Devices and matmul precision for this process; (precision, the summary's compute line)."""
        enable_compilation_cache()
        self.devices = pick_devices(self.options.device)
        if self.devices[0].platform == "gpu" and self.options.buckets == BucketSpec():
            self.buckets = GPU_BUCKETS  # the default batch sizes are CPU sizes
        precision, compute = choose_precision(self.options.precision, self.devices[0])
        if len(self.devices) > 1:
            compute += f", {len(self.devices)} host devices"
        return precision, compute

    def _make_scorer(self) -> Scorer | None:
        """The model on this process's devices; an engine that scores elsewhere (Ray) returns None."""
        return Scorer(
            self.bundle.model,
            self.bundle.params,
            self.truncation,
            self.buckets,
            self.devices,
            self.precision,
            self.host_pool,
        )

    # ---- planning -------------------------------------------------------------------------
    def run(
        self, inputs: list[str], output: str | None, filesystem: pafs.FileSystem | None = None
    ) -> RunSummary:
        started = time.perf_counter()
        _allow_many_open_files()
        self.run_record = new_run_record()
        # Created first and kept on the job: a failed run still reports what it did (runner.py).
        summary = self.summary = RunSummary(
            model={
                "name": self.bundle.name,
                "model_sha256": self.bundle.bundle_sha256,
                "weights_sha256": self.bundle.weights_sha256,
            },
            run=self.run_record,
            compute=self.compute,
            profile=Profile(self.bundle.labels, self.truncation.max_tokens),
        )
        try:
            files = discover_inputs(inputs, filesystem)
            single = len(inputs) == 1 and _names_one_file(inputs[0], files)
            targets = plan_outputs(files, output, single, filesystem)
            check_outputs_are_not_inputs(files, targets)
            check_outputs_are_not_listed_inputs(files, targets)
            good = self._preflight(files, targets, summary)
            interrupts.check("nothing was scored yet", self.options.resume_hint)
            self._score_all(good, summary)
            interrupts.check("every file is complete", self.options.resume_hint)
        finally:
            summary.seconds = time.perf_counter() - started
            summary.drift = compare(
                summary.profile.to_dict(),
                self.bundle.card.get("reference_profile"),
                self.options.drift,
                summary.unprofiled_rows,
            )
        if summary.error_rate > self.options.max_error_rate:
            raise ErrorRateExceeded(
                f"{summary.error_rows:,} of {summary.rows:,} rows ({summary.error_rate:.2%}) could not be "
                f"scored, above --max-error-rate {self.options.max_error_rate:.2%}; see the 'error' column",
            )
        if should_fail(summary.drift, self.options.drift):
            raise DriftAlert(
                f"drift {summary.drift['status']} (fail_on_drift = {self.options.drift.fail_on_drift!r}): "
                + "; ".join(summary.drift["reasons"])
                + ". The outputs are complete; review them before use."
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
                repeated = sorted({n for n in schema.names if schema.names.count(n) > 1})
                if repeated:
                    raise InputError(f"{source}: column name(s) {repeated} appear more than once")
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
                summary.bad_file_outputs.append(target.uri)
                self.log(f"skipping bad file: {err}")
                continue
            good.append((source, target, schema))
            self._preflight_seen[source.location.path] = reader.seen
            row_counts.append(reader.num_rows)
        if not good:
            raise InputError("no readable input files: " + "; ".join(summary.bad_files))
        self.input_types = self._unified_types([schema for _, _, schema in good])
        known = None if None in row_counts else sum(row_counts)
        self.progress.planned(len(good), known)
        return [(s, t) for s, t, _ in good]

    def _unified_types(self, schemas: list[pa.Schema]) -> dict[str, pa.DataType]:
        """One type per input column for the whole run, so every output of a run has the same schema
        and a directory of outputs reads as one table: int32 and int64 become int64, and a column that
        is text in some shard (CSV values are kept as written) is text in all of them."""
        types: dict[str, list[pa.DataType]] = {}
        for schema in schemas:
            for field_ in schema:
                if field_.name != self.options.text_column:
                    types.setdefault(field_.name, []).append(field_.type)
        unified = {}
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

    def _fingerprint(self, source: InputFile, reader: ShardReader) -> dict[str, str]:
        """Everything an output depends on: the input's bytes, every file of the model bundle (weights,
        labels, temperature, vocabulary, tokenizer) and the options that change the output."""
        info = source.location.filesystem.get_file_info(source.location.path)
        return {
            "input": source.location.path,
            "input_size": str(info.size),
            "input_mtime_ns": str(info.mtime_ns),
            "input_content": reader.content_id(),
            "bundle_sha256": self.bundle.bundle_sha256,
            "text_column": self.options.text_column,
            "id_column": self.options.id_column or "",
            "keep_text": str(self.options.keep_text),
            "max_tokens": str(self.truncation.max_tokens),
            "head_tokens": str(self.truncation.head_tokens),
            "csv_delimiter": self.options.csv_delimiter,
            "csv_infer_types": str(self.options.csv_infer_types),
            "precision": self.precision,
            "input_types": json.dumps({name: str(t) for name, t in self.input_types.items()}),
            # the compiled shapes: a resume under other batch settings could round differently
            "batch_plan": json.dumps(dataclasses.astuple(self.options.buckets)),
            "partition_keys": ",".join(self.options.partition_keys),
            "provenance": str(self.options.provenance),
        }

    # ---- files: open, stream, finish ----------------------------------------------------------
    def _score_all(self, files: list[tuple[InputFile, Location]], summary: RunSummary) -> None:
        """Score every file through ONE stream of windows: a window may hold rows of several files, so
        many small shards are bucketed and batched together instead of each padding its own batches.
        Each file's rows still go to its own output, in order, with its own commit and resume state."""
        opened: list[FileTask] = []
        stop = threading.Event()
        encoded_q: queue.Queue = queue.Queue(maxsize=2)
        scored_q: queue.Queue = queue.Queue(maxsize=2)
        failures: list[BaseException] = []
        stages = summary.stage_seconds

        def produce() -> None:
            try:
                for group in self._groups(files, opened, stages):
                    if not _put(encoded_q, group, stop):
                        return
            except BaseException as err:  # handed to the main thread
                failures.append(err)
            finally:
                _put(encoded_q, None, stop)

        def consume() -> None:
            try:
                while (group := scored_q.get()) is not None:
                    started = time.perf_counter()
                    for item in group:
                        self._commit(item, summary)
                    stages["write"] += time.perf_counter() - started
            except BaseException as err:
                failures.append(err)
                stop.set()

        threads = [
            threading.Thread(target=produce, daemon=True),
            threading.Thread(target=consume, daemon=True),
        ]
        for thread in threads:
            thread.start()
        interrupted = False
        ahead = None  # (group, fetch): dispatched to the device, results not fetched yet

        def hand_over(group, fetch) -> bool:
            started = time.perf_counter()
            fetch()
            stages["forward"] += time.perf_counter() - started
            return _put(scored_q, group, stop)

        try:
            while True:
                group = _get(encoded_q, stop)
                if stop.is_set() or interrupts.stop_requested():
                    break
                if group is None:  # the end of the stream: the last group goes to the writer too
                    if ahead is not None:
                        hand_over(*ahead)
                    break
                started = time.perf_counter()
                fetch = self._dispatch([item for item in group if isinstance(item, Window)])
                stages["forward"] += time.perf_counter() - started
                # dispatch ahead, fetch behind: this group is queued on the device while the previous
                # one is fetched and handed to the writer
                if ahead is not None and (interrupts.stop_requested() or not hand_over(*ahead)):
                    break
                ahead = (group, fetch)
        except KeyboardInterrupt:  # only when run off the main thread's signal handling
            interrupted = True
        finally:
            stop.set()
            _finish_writer(scored_q, threads[1])
            threads[0].join()  # no thread may still be inside Arrow or JAX when the process exits
            for task in opened:
                task.lock.release()
        if failures:
            raise failures[0]
        if interrupted or interrupts.stop_requested():
            self._stop_interrupted(opened)

    def _stop_interrupted(self, opened: list[FileTask]) -> None:
        """Raise Interrupted, naming the partial outputs whose committed rows a rerun continues."""
        partial = [t for t in opened if not t.finished and t.writer.progress.rows_done]
        where = ", ".join(f"{t.writer.progress.rows_done:,} rows of {t.source}" for t in partial)
        interrupts.check(f"committed work is kept ({where or 'no partial output'})", self.options.resume_hint)
        raise Interrupted(f"interrupted; committed work is kept. {self.options.resume_hint}")

    def _groups(
        self, files: list[tuple[InputFile, Location]], opened: list[FileTask], stages: dict
    ) -> Iterator[list[Window | FileEvent]]:
        """Windows of every file in order, packed into groups of about `window_rows` rows, with an
        event after each file's last window (or in place of a file already complete or gone bad)."""
        group: list[Window | FileEvent] = []
        rows = 0
        multi = len(files) > 1
        for source, target in files:
            task = self._open(source, target)
            opened.append(task)
            if task.complete_before or task.assemble_only:
                group.append(FileEvent("skip" if task.complete_before else "end", task))
                continue
            try:
                windows = task.reader.windows(task.skip_rows)
                for window in self._prepare(windows, task.skip_rows, stages):
                    window.task = task
                    group.append(window)
                    rows += window.table.num_rows
                    if rows >= self.options.window_rows:
                        yield group
                        group, rows = [], 0
            except InputError as err:  # a file that turned bad mid-way is a bad file like any other
                if not (self.options.skip_bad_files and multi):
                    raise
                group.append(FileEvent("bad", task, str(err)))
                continue
            group.append(FileEvent("end", task))
        if group:
            yield group

    def _forward(self, windows: list[Window]) -> None:
        """Logits for every scorable row of the windows, bucketed and batched across all of them."""
        self._dispatch(windows)()

    def _dispatch(self, windows: list[Window]) -> Callable[[], None]:
        """Start the forward pass of the windows' scorable rows; the returned function waits for it
        and sets each window's logits."""
        if not windows:
            return lambda: None
        ok_rows, base_row = [], 0
        for window in windows:
            ok_rows.append(np.flatnonzero(window.reasons == None) + base_row)  # noqa: E711
            base_row += len(window.encoded)
        combined = Encoded.concat([window.encoded for window in windows])
        dispatched = self.scorer.dispatch(combined, np.concatenate(ok_rows))

        def fetch() -> None:
            logits = self.scorer.collect(dispatched)
            first = 0
            for window, rows in zip(windows, ok_rows, strict=True):
                window.logits = logits[first : first + rows.size]
                first += rows.size

        return fetch

    def _open(self, source: InputFile, target: Location) -> FileTask:
        """Lock the output, then decide: already complete (skip), continue, or start afresh."""
        if target.is_dir():  # no flag may replace it: --overwrite would fail only after scoring
            raise OutputError(
                f"{target.uri} is a directory (a Spark-style dataset?), and batchscore writes one "
                f"Parquet file per input: name a file inside it ({target.uri.rstrip('/')}/"
                f"{source.stem}.parquet) or another one"
            )
        lock = OutputLock(target)
        lock.acquire(self.options.command or f"scoring {source}")
        try:
            reader = ShardReader(source, self.read_options)
            reader.seen = self._preflight_seen.get(source.location.path)  # what the preflight checked
            fingerprint = self._fingerprint(source, reader)
            writer = PartWriter(target, fingerprint, self.run_record)
            writer.remove_leftovers()
            task = FileTask(source, target, reader, writer, lock, fingerprint)
            if target.exists():
                done = read_file_metadata(target).get("fingerprint") == json.dumps(fingerprint)
                if self.options.resume and done:
                    writer.discard()  # parts of a run killed between its final rename and their removal
                    task.complete_before = True
                    return task
                if not (self.options.overwrite or self.options.resume):
                    raise OutputError(
                        f"{target.uri} already exists; pass --overwrite to replace it or --resume"
                    )
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
            task.skip_rows = committed.rows_done
            task.assemble_only = committed.complete
            task.profile = Profile(self.bundle.labels, self.truncation.max_tokens)
            if committed.tally is not None:
                task.profile.merge_counts(committed.tally)
            return task
        except BaseException:
            lock.release()
            raise

    def _commit(self, item: Window | FileEvent, summary: RunSummary) -> None:
        """The writer side: one window's rows, or one file's end (in stream order, on one thread)."""
        if isinstance(item, Window):
            self._write_window(item, summary)
            return
        task = item.task
        if item.kind == "skip":
            self._count_output(task.target, summary)
            summary.files_skipped_done += 1
            self.log(f"{task.target.uri}: already complete, skipped")
        elif item.kind == "bad":
            task.writer.discard()  # the file is reported bad: leave no half output behind
            summary.bad_files.append(item.detail)
            summary.bad_file_outputs.append(task.target.uri)
            self.log(f"skipping bad file: {item.detail}")
        else:
            self._finish(task, summary)
        task.finished = True
        task.lock.release()
        if item.kind != "bad":
            self.progress.file_done()

    def _write_window(self, window: Window, summary: RunSummary) -> None:
        """Commit one window's output rows, with the file's profile so far (shared by the engines)."""
        task = window.task
        task.writer.write_part(self._output_table(window, summary, task.profile), task.profile.to_counts())
        self.progress.rows(window.table.num_rows)
        summary.rows_scored_now += window.table.num_rows
        summary.tokens_now += int(window.encoded.n_tokens.sum())

    def _finish(self, task: FileTask, summary: RunSummary) -> None:
        """All rows are committed: assemble the output file atomically and count it."""
        writer = task.writer
        if not task.assemble_only:
            if writer.progress.parts == 0:  # a zero-row input: an empty part carries the schema
                table = task.reader.empty_table()
                texts, reasons, encoded = self._encode(table)
                window = Window(0, 0, table, texts, reasons, encoded, task=task)
                window.logits = np.zeros((0, self.bundle.model.num_classes), np.float32)
                writer.write_part(self._output_table(window, summary), task.profile.to_counts())
            writer.mark_complete()
        for column, count in task.reader.replaced_utf8.items():
            summary.replaced_utf8[column] += count
        metadata = {
            "model_name": self.bundle.name,
            "model_sha256": self.bundle.bundle_sha256,
            "weights_sha256": self.bundle.weights_sha256,
            "version": __version__,
            "run_id": task.run["run_id"],
            "scored_at": task.run["scored_at"],
            "input": task.source.location.uri,
            "text_column": self.options.text_column,
            "fingerprint": json.dumps(task.fingerprint),
            "profile": json.dumps(task.profile.to_counts()),  # drift.Profile counts of every row
        }
        writer.assemble(metadata)
        self._count_output(task.target, summary)
        summary.files_scored += 1

    def _count_output(self, target: Location, summary: RunSummary) -> None:
        """Summary counts come from the finished file, so rows committed before a crash count too."""
        scores = read_columns(target, SUMMARY_COLUMNS)
        summary.add_rows(scores)
        metadata = batchscore_metadata(scores.schema)  # the footer came with the columns
        if "run_id" in metadata:
            summary.output_run_ids.add(metadata["run_id"])
        profile = metadata.get("profile")
        if profile is not None:
            summary.profile.merge_counts(json.loads(profile))
        else:  # an output of a batchscore release before drift profiles
            summary.unprofiled_rows += scores.num_rows
        if scores.num_rows == 0:
            summary.empty_files += 1
        summary.outputs.append(target.uri)

    def _encode(self, table: pa.Table) -> tuple[pa.Array, np.ndarray, Encoded]:
        return encode_window(
            table,
            self.options.text_column,
            self.bundle.vocab,
            self.bundle.tokenizer,
            self.host_pool,
            self.host_workers,
        )

    def _prepare(self, windows: Iterator[pa.Table], first_row: int, stages: dict) -> Iterator[Window]:
        index = 0
        while True:
            started = time.perf_counter()
            table = next(windows, None)
            stages["read"] += time.perf_counter() - started
            if table is None:
                return
            started = time.perf_counter()
            texts, reasons, encoded = self._encode(table)
            stages["tokenize"] += time.perf_counter() - started
            yield Window(index, first_row, table, texts, reasons, encoded)
            first_row += table.num_rows
            index += 1

    def score_table(self, table: pa.Table, text_column: str | None = None) -> pa.Table:
        """Score an in-memory table exactly as a window of an input file is scored: the input columns
        (renamed on a clash) and the output columns, no `row` (the table's own order is the row).
        This is the Python API's path; thread-safe (nothing here mutates the job)."""
        job = self
        if text_column is not None and text_column != self.options.text_column:
            job = copy.copy(self)
            job.options = replace(self.options, text_column=text_column)
        if job.options.text_column not in table.column_names:
            raise InputError(f"no text column {job.options.text_column!r}; columns are {table.column_names}")
        parts = []
        for start in range(0, max(table.num_rows, 1), self.options.window_rows):  # memory: one window
            part = table.slice(start, self.options.window_rows)
            texts, reasons, encoded = job._encode(part)
            window = Window(0, start, part, texts, reasons, encoded)
            job._forward([window])
            parts.append(job._output_table(window, RunSummary(), with_row=False))
        return pa.concat_tables(parts)

    def _output_table(
        self, window: Window, summary: RunSummary, profile: Profile | None = None, with_row: bool = True
    ) -> pa.Table:
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
        truncated = n_tokens > self.truncation.max_tokens
        text_invalid = window.texts.is_null().to_numpy(zero_copy_only=False)

        columns: dict[str, pa.Array] = {}
        if with_row and not self.options.id_column:
            columns["row"] = pa.array(np.arange(window.first_row, window.first_row + n, dtype=np.int64))
        provenance = self.options.provenance and window.task is not None
        renamed = output_names(
            window.table.column_names, self.options.text_column, self.options.keep_text,
            self.options.partition_keys, provenance,
        )  # fmt: skip
        for name, out_name in renamed.items():
            if name == self.options.text_column:
                columns[out_name] = window.texts
                continue
            column = window.table.column(name)
            wanted = self.input_types.get(name, column.type)
            try:
                columns[out_name] = column if column.type == wanted else column.cast(wanted)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:  # e.g. int64 above 2**53 -> float64
                where = window.task.source if window.task is not None else "input"
                raise InputError(
                    f"{where}: column {name!r} ({column.type}) does not fit the run's type {wanted} "
                    f"(shared with other shards) without changing values: {err}"
                ) from err
        for name, out_name in renamed.items():
            if name != out_name:
                summary.renamed_columns[name] = out_name
        mask = ~ok
        columns["label"] = pa.array(labels, pa.string())
        columns["prob_positive"] = pa.array(prob_pos.astype(np.float32), mask=mask)
        columns["prob_negative"] = pa.array((1.0 - prob_pos).astype(np.float32), mask=mask)
        columns["n_tokens"] = pa.array(n_tokens, pa.int32(), mask=text_invalid)
        columns["truncated"] = pa.array(truncated, pa.bool_(), mask=text_invalid)
        columns["error"] = pa.array(window.reasons, pa.string())
        if profile is not None:
            profile.add(window.encoded.ids, n_tokens[ok], prob_pos[ok])  # error rows have no ids
        if provenance:
            columns.update(provenance_columns(self.bundle, window.task.run, n))
        return pa.table(columns)


PROVENANCE_TYPES = (pa.string(), pa.string(), pa.string(), pa.timestamp("us", tz="UTC"))


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


def encode_window(
    table: pa.Table,
    text_column: str,
    vocab: Vocab,
    tokenizer: TokenizerConfig,
    pool: Executor | None = None,
    slices: int = 1,
) -> tuple[pa.Array, np.ndarray, Encoded]:
    """Clean the text column, tokenize it and flag rows that cannot be scored (shared by all engines).

    With a pool, `slices` contiguous slices of rows are encoded in its threads and joined in order:
    Arrow's compute kernels (the tokenizer, the vocabulary lookup) release the GIL, so they run in
    parallel.
    """
    column = table.column(text_column)
    if pool is None or slices < 2 or table.num_rows < 2 * MIN_SLICE_ROWS:
        return _encode_rows(column, vocab, tokenizer)
    step = -(-table.num_rows // slices)
    parts = list(pool.map(lambda start: _encode_rows(column.slice(start, step), vocab, tokenizer),
                          range(0, table.num_rows, step)))  # fmt: skip
    texts = pa.concat_arrays([texts for texts, _, _ in parts])
    reasons = np.concatenate([reasons for _, reasons, _ in parts])
    return texts, reasons, Encoded.concat([encoded for _, _, encoded in parts])


MIN_SLICE_ROWS = 256  # below this a window is encoded in one piece: threads would cost more than they save


def _encode_rows(column, vocab: Vocab, tokenizer: TokenizerConfig) -> tuple[pa.Array, np.ndarray, Encoded]:
    texts, reasons = clean_texts(column)
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


def _allow_many_open_files() -> None:
    """Every file of a window group holds its lock and reader open until it is written, so a window
    of a thousand one-row shards needs a thousand descriptors: lift the soft limit to the hard one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard)
            )
    except (ImportError, ValueError, OSError):
        pass  # not POSIX, or not allowed: the run goes on with the limit it has


def _names_one_file(spec: str, files: list[InputFile]) -> bool:
    """Whether the single INPUT the user gave is one file (not a directory or a glob)."""
    if is_pattern(spec):
        return False
    return len(files) == 1 and files[0].location.uri == spec
