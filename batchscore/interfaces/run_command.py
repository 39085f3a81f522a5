"""`batchscore run` without a terminal: signals, the progress bar, the run, its summary on stderr
and as JSON; raises the run's error after reporting it (the CLI turns it into the exit code)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from batchscore.base.errors import OutputError, UsageError
from batchscore.base.interrupts import stop_on_signals
from batchscore.base.process_limits import require_address_space
from batchscore.io.console import STDERR
from batchscore.io.safe_files import write_to_named_target
from batchscore.monitoring.summary import ProgressListener, RunSummary
from batchscore.pipeline.options import RunOptions
from batchscore.pipeline.run import run_files


def run_scoring(*args, **kwargs) -> RunSummary:
    """`batchscore run` as a library call: `run_reported` (same arguments), then the failed run's error
    raised once its summary is reported."""
    summary = run_reported(*args, **kwargs)
    if summary.failure is not None:
        raise summary.failure
    return summary


def run_reported(
    inputs: list[str],
    output: str | None,
    model: Path | str | None,
    options: RunOptions,
    progress: bool | None = None,
    summary_json: Path | None = None,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
    filesystem=None,
    engine: str = "local",
    ray_address: str | None = None,
    engine_logs: bool = False,
) -> RunSummary:
    """The run with its summary reported (a refusal before any work is only its one error line, which
    the caller prints); the summary, failed or not."""
    require_address_space()
    if summary_json is not None and str(summary_json) != "-":
        folder = Path(summary_json).parent
        if not folder.is_dir():  # found now, not after hours of scoring (and never hiding the run's code)
            raise UsageError(f"--summary-json {summary_json}: directory {folder} does not exist")
    bar = _ProgressBar() if (sys.stderr.isatty() if progress is None else progress) else None
    try:
        with stop_on_signals():
            summary = run_files(
                inputs, output, model, options, engine=engine, ray_address=ray_address,
                engine_logs=engine_logs, filesystem=filesystem, progress=bar, log=log,
            )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    if summary.failure is None or summary.did_work:  # a refusal before any work: its error line alone
        for line in summary.lines():
            log(line)
    if summary_json is not None:
        write_json_line(summary.to_dict(), summary_json)
    return summary


def write_json_line(payload: dict, target: Path | str) -> None:
    """`payload` as ONE line of JSON (a scheduler that keeps the last line of stdout gets all of it),
    to stdout for "-", else to a file written atomically."""
    text = json.dumps(payload, separators=(",", ":")) + "\n"
    if str(target) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        write_to_named_target(str(target), text.encode("utf-8"))
    except OSError as err:  # a full disk, a read-only folder: an output problem, exit 5
        raise OutputError(f"--summary-json {target}: cannot write it: {err.strerror or err}") from err


class _ProgressBar(ProgressListener):
    """rows done / total (when known: Parquet inputs), files done, rows/s and ETA on stderr; shown
    from the moment the run knows its files (a run refused before that shows no bar)."""

    def __init__(self) -> None:
        self.bar = None
        self.files = 0
        self.total_files = 0

    def planned(self, files: int, rows: int | None) -> None:
        from tqdm import tqdm

        self.bar = tqdm(unit="rows", desc="scoring", file=STDERR, mininterval=0.5)  # whole rows, not 3.00k
        self.total_files = files
        self.bar.total = rows
        self.bar.set_postfix_str(f"files 0/{files}")

    def rows(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def file_done(self) -> None:
        self.files += 1
        if self.bar is not None:
            self.bar.set_postfix_str(f"files {self.files}/{self.total_files}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
