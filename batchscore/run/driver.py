"""A file run, top to bottom: plan -> open tasks -> `for item in engine.stream(...): sink.take(item)`
-> verdict. The engine decides only how rows are read and scored; everything else is here or below."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing

import pyarrow.fs as pafs

from batchscore import interrupts
from batchscore.bundle import Bundle
from batchscore.core.compute import truncation_for
from batchscore.core.outputs import OutputBuilder, new_run_record
from batchscore.drift import Profile
from batchscore.engines import Engine
from batchscore.errors import Interrupted
from batchscore.report import ProgressListener, RunSummary
from batchscore.run.options import RunOptions
from batchscore.run.plan import plan_run
from batchscore.run.sink import Sink
from batchscore.run.tasks import FileTask, TaskOpener
from batchscore.run.verdict import assess_drift, judge


def new_summary(bundle: Bundle, options: RunOptions, engine: Engine) -> RunSummary:
    """The run's summary, made before any work so a failed run still reports what it did."""
    return RunSummary(
        model={
            "name": bundle.name,
            "model_sha256": bundle.bundle_sha256,
            "weights_sha256": bundle.weights_sha256,
        },
        run=new_run_record(),
        compute=engine.compute_line(),
        profile=Profile(bundle.labels, truncation_for(bundle, options.max_tokens).max_tokens),
    )


def score_files(
    bundle: Bundle,
    options: RunOptions,
    engine: Engine,
    inputs: list[str],
    output: str | None,
    summary: RunSummary | None = None,
    filesystem: pafs.FileSystem | None = None,
    progress: ProgressListener | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> RunSummary:
    """Score `inputs` into their outputs; raises the run's error (with `summary` filled so far)."""
    started = time.perf_counter()
    summary = summary if summary is not None else new_summary(bundle, options, engine)
    progress = progress or ProgressListener()
    truncation = truncation_for(bundle, options.max_tokens)
    _allow_many_open_files()
    try:
        plan = plan_run(inputs, output, options, summary, filesystem, progress, log)
        summary.input_types = plan.input_types
        interrupts.check("nothing was scored yet", options.resume_hint)
        tasks = TaskOpener(bundle, options, plan, engine.compute, truncation, summary.run, progress, log)
        builder = OutputBuilder(
            bundle, truncation.max_tokens, options.text_column, options.id_column, options.keep_text,
            options.partition_keys, options.provenance, plan.input_types,
        )  # fmt: skip
        sink = Sink(bundle, builder, summary, options.skip_bad_files and plan.several, progress, log)
        interrupted = False
        try:
            with closing(engine.stream(tasks, plan, summary.stage_seconds)) as stream:
                for item in stream:
                    taken = time.perf_counter()
                    sink.take(item)
                    summary.stage_seconds["write"] += time.perf_counter() - taken
        except KeyboardInterrupt:  # only when run off the main thread's signal handling
            interrupted = True
        finally:
            tasks.release_all()
            summary.compute = engine.compute_line()
        if interrupted or interrupts.stop_requested():
            _stop_interrupted(tasks.opened, options.resume_hint)
        interrupts.check("every file is complete", options.resume_hint)
    finally:
        summary.seconds = time.perf_counter() - started
        assess_drift(summary, bundle, options)
    judge(summary, options)
    return summary


def _stop_interrupted(opened: list[FileTask], resume_hint: str) -> None:
    """Raise Interrupted, naming the partial outputs whose committed rows a rerun continues."""
    partial = [t for t in opened if not t.finished and t.writer.progress.rows_done]
    where = ", ".join(f"{t.writer.progress.rows_done:,} rows of {t.source}" for t in partial)
    interrupts.check(f"committed work is kept ({where or 'no partial output'})", resume_hint)
    raise Interrupted(f"interrupted; committed work is kept. {resume_hint}")


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
