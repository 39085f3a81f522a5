"""One task per output file: its lock, its fingerprint, and the resume decision (skip a complete
output, continue a partial one, only assemble one whose rows are all committed, or start afresh)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from batchscore.base.errors import InputError, OutputError
from batchscore.inference.compute import ComputePlan
from batchscore.inference.forward import Truncation
from batchscore.io.paths import InputFile, Location
from batchscore.io.readers import ShardReader
from batchscore.io.writers import OutputLock, PartWriter, read_file_metadata
from batchscore.model.bundle import Bundle
from batchscore.model.scoring_pass import ARITHMETIC_REVISION
from batchscore.monitoring.drift import Profile
from batchscore.monitoring.summary import ProgressListener
from batchscore.pipeline.options import RunOptions
from batchscore.pipeline.plan import RunPlan


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


@dataclass(frozen=True)
class FileDone:
    """In the stream after a file's last window: every row is committed, assemble the output."""

    task: FileTask


@dataclass(frozen=True)
class FileAlreadyDone:
    """In the stream in place of a file whose output an earlier run completed."""

    task: FileTask


@dataclass(frozen=True)
class FileBad:
    """In the stream where a file turned out unreadable part-way (after its committed windows)."""

    task: FileTask
    error: InputError


FileEvent = FileDone | FileAlreadyDone | FileBad


def ready_event(task: FileTask) -> FileEvent | None:
    """The event of a file no engine needs to read: already complete, or only left to assemble."""
    if task.complete_before:
        return FileAlreadyDone(task)
    if task.assemble_only:
        return FileDone(task)
    return None


@contextlib.contextmanager
def open_tasks(opener: TaskOpener) -> Iterator[list[FileTask]]:
    """Every output of the opener's plan locked and its resume decided, in the caller's thread, before
    any row is read (a refusal, such as an output locked by another run, comes before any work); every
    lock is released however the run ends."""
    opened: list[FileTask] = []
    try:
        for source, target in opener.plan.files:
            opened.append(opener.open(source, target))
        yield opened
    finally:
        for task in opened:
            task.lock.release()


class TaskOpener:
    """Opens one output's task: lock, reader, fingerprint and the resume decision."""

    def __init__(
        self,
        bundle: Bundle,
        options: RunOptions,
        plan: RunPlan,
        compute: ComputePlan,
        truncation: Truncation,
        run_record: dict[str, str],
        progress: ProgressListener,
        log: Callable[[str], None],
    ):
        self.bundle, self.options, self.plan = bundle, options, plan
        self.compute, self.truncation, self.run_record = compute, truncation, run_record
        self.progress, self.log = progress, log
        self.read_options = options.read_options()

    def open(self, source: InputFile, target: Location) -> FileTask:
        """Lock the output, then decide: already complete (skip), continue, or start afresh."""
        options = self.options
        if target.is_dir():  # no flag may replace it: --overwrite would fail only after scoring
            raise OutputError(
                f"{target.uri} is a directory (a Spark-style dataset?), and batchscore writes one "
                f"Parquet file per input: name a file inside it ({target.uri.rstrip('/')}/"
                f"{source.stem}.parquet) or another one"
            )
        lock = OutputLock(target)
        lock.acquire(options.command or f"scoring {source}")
        try:
            reader = ShardReader(source, self.read_options)
            reader.seen = self.plan.preflight_seen.get(source.location.path)  # what the preflight checked
            fingerprint = self.fingerprint(source, reader)
            writer = PartWriter(target, fingerprint, self.run_record)
            writer.remove_leftovers()
            task = FileTask(source, target, reader, writer, lock, fingerprint)
            if target.exists():
                done = read_file_metadata(target).get("fingerprint") == json.dumps(fingerprint)
                if options.resume and done:
                    writer.discard()  # parts of a run killed between its final rename and their removal
                    task.complete_before = True
                    return task
                if not (options.overwrite or options.resume):
                    raise OutputError(
                        f"{target.uri} already exists; pass --overwrite to replace it or --resume"
                    )
            if writer.has_partial() and not options.resume:
                if not options.overwrite:
                    raise OutputError(
                        f"{target.uri}: partial output of an interrupted run is present; "
                        "pass --resume to continue it or --overwrite to start again"
                    )
                writer.discard()
            committed = writer.resume() if options.resume else writer.progress
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

    def fingerprint(self, source: InputFile, reader: ShardReader) -> dict[str, str]:
        """Everything an output depends on: the input's bytes, every file of the model bundle (weights,
        labels, temperature, vocabulary, tokenizer), the options that change the output and what ran
        (precision, batch plan, the scoring arithmetic's revision), whichever engine ran it."""
        options = self.options
        info = source.location.filesystem.get_file_info(source.location.path)
        return {
            "input": source.location.path,
            "input_size": str(info.size),
            "input_mtime_ns": str(info.mtime_ns),
            "input_content": reader.content_id(),
            "bundle_sha256": self.bundle.bundle_sha256,
            "text_column": options.text_column,
            "id_column": options.id_column or "",
            "keep_text": str(options.keep_text),
            "max_tokens": str(self.truncation.max_tokens),
            "head_tokens": str(self.truncation.head_tokens),
            "csv_delimiter": options.csv_delimiter,
            "csv_infer_types": str(options.csv_infer_types),
            "precision": self.compute.precision,
            "arithmetic": ARITHMETIC_REVISION,
            "input_types": json.dumps({name: str(t) for name, t in self.plan.input_types.items()}),
            # the compiled shapes: a resume under other batch settings could round differently
            "batch_plan": json.dumps(dataclasses.astuple(self.compute.buckets)),
            "partition_keys": ",".join(options.partition_keys),
            "provenance": str(options.provenance),
        }
