"""One file run, top to bottom: bundle -> engine -> plan -> open tasks -> engine stream -> sink ->
verdict -> summary. Each step is a call whose result the next takes; nothing below writes the summary."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from batchscore.base import interrupts
from batchscore.base.errors import BatchscoreError, Interrupted
from batchscore.base.process_limits import require_open_files
from batchscore.inference.compute import truncation_for
from batchscore.inference.outputs import OutputBuilder, new_run_record
from batchscore.inference.rows import Window
from batchscore.model.bundle import Bundle, load_bundle
from batchscore.monitoring.drift import Profile
from batchscore.monitoring.summary import STAGES, OutputCounts, ProgressListener, RunSummary
from batchscore.pipeline.engines import Engine, open_engine
from batchscore.pipeline.options import RunOptions
from batchscore.pipeline.plan import plan_run
from batchscore.pipeline.sink import Sink
from batchscore.pipeline.tasks import FileAlreadyDone, FileBad, FileDone, FileTask, TaskOpener, open_tasks
from batchscore.pipeline.verdict import assess_drift, complete_run_failure, run_status


@dataclass
class _RunSoFar:
    """What a run has got so far; a failure at any step still reports it."""

    bundle: Bundle | None = None
    engine: Engine | None = None
    counts: OutputCounts | None = None
    input_types: dict | None = None


def run_files(
    inputs: list[str],
    output: str | None,
    model: Path | str | None,
    options: RunOptions,
    *,
    engine: str = "local",
    ray_address: str | None = None,
    engine_logs: bool = False,
    filesystem: pafs.FileSystem | None = None,
    progress: ProgressListener | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> RunSummary:
    """Score `inputs` into their outputs. Never raises an operator's error: the summary carries it
    (`failure`, `status`, `exit_code`), with the counts of whatever was committed before it."""
    started, record = time.perf_counter(), new_run_record()
    stages = dict.fromkeys(STAGES, 0.0)
    got = _RunSoFar()
    progress = progress or ProgressListener()
    failure: BatchscoreError | None = None
    try:
        got.bundle = bundle = load_bundle(model)
        truncation = truncation_for(bundle, options.max_tokens)  # decided once, for every engine
        got.engine = scoring_engine = open_engine(
            engine, bundle, model, options, truncation, ray_address, engine_logs
        )
        got.counts = OutputCounts(profile=Profile(bundle.labels, truncation.max_tokens))
        plan = plan_run(inputs, output, options, filesystem, progress, log)
        got.input_types = plan.input_types
        interrupts.check("nothing was scored yet", options.resume_hint)
        builder = OutputBuilder(
            bundle, truncation.max_tokens, options.text_column, options.id_column, options.keep_text,
            options.partition_keys, options.provenance, plan.input_types,
        )  # fmt: skip
        sink = Sink(bundle, builder, plan, got.counts, progress, log)
        require_open_files(len(plan.files))  # every output's lock is held until it is written
        opener = TaskOpener(bundle, options, plan, scoring_engine.compute, truncation, record, progress, log)
        with open_tasks(opener) as tasks:
            interrupted = _drain(scoring_engine.stream(tasks, plan, stages), sink, stages)
            if interrupted or interrupts.stop_requested():
                _stop_interrupted(tasks, options.resume_hint)
        interrupts.check("every file is complete", options.resume_hint)
    except BatchscoreError as err:
        failure = err
    return _summary(got, options, record, stages, time.perf_counter() - started, failure)


def _drain(stream: Iterator, sink: Sink, stages: dict[str, float]) -> bool:
    """Every stream item to the sink's call for its kind, in stream order, on this thread; True when
    a KeyboardInterrupt (a run off the main thread's signal handling) stopped it."""
    try:
        with closing(stream):
            for item in stream:
                taken = time.perf_counter()
                match item:
                    case Window():
                        sink.write(item)
                    case FileDone(task):
                        sink.file_done(task)
                    case FileAlreadyDone(task):
                        sink.file_already_done(task)
                    case FileBad(task, error):
                        sink.file_bad(task, error)
                stages["write"] += time.perf_counter() - taken
    except KeyboardInterrupt:
        return True
    return False


def _stop_interrupted(opened: list[FileTask], resume_hint: str) -> None:
    """Raise Interrupted, naming the partial outputs whose committed rows a rerun continues."""
    partial = [t for t in opened if not t.finished and t.writer.progress.rows_done]
    where = ", ".join(f"{t.writer.progress.rows_done:,} rows of {t.source}" for t in partial)
    interrupts.check(f"committed work is kept ({where or 'no partial output'})", resume_hint)
    raise Interrupted(f"interrupted; committed work is kept. {resume_hint}")


def _summary(
    got: _RunSoFar,
    options: RunOptions,
    record: dict[str, str],
    stages: dict[str, float],
    seconds: float,
    failure: BatchscoreError | None,
) -> RunSummary:
    """The run's summary, from what each step returned (and the error that ended it, if any)."""
    counts = got.counts or OutputCounts()
    drift = None
    if got.bundle is not None and got.counts is not None:
        drift = assess_drift(counts, got.bundle, options)
        if failure is None:
            failure = complete_run_failure(counts, drift, options)
    status, exit_code = run_status(counts, failure)
    bundle = got.bundle
    return RunSummary.of(
        counts,
        status=status,
        exit_code=exit_code,
        error=None if failure is None else str(failure),
        failure=failure,
        stage_seconds=stages,
        seconds=seconds,
        input_types=got.input_types or {},
        model={} if bundle is None else bundle.identity(),
        run=record if got.engine is not None else {},
        compute=got.engine.compute_line() if got.engine is not None else "",
        drift=drift,
    )
