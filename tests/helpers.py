"""Helpers shared by test modules (fixtures are in conftest.py)."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from batchscore.interfaces.run_command import run_scoring
from batchscore.io import writers
from batchscore.monitoring.summary import RunSummary
from batchscore.pipeline.options import RunOptions

ROOT = Path(__file__).resolve().parent.parent  # the repository
QUIET = {"progress": False, "log": lambda m: None}  # run_scoring without a progress bar or log lines

# the provenance columns that name the run, not the scores: two runs of the same input differ only here
RUN_VARYING = ("run_id", "scored_at")


def without_run_columns(table: pa.Table) -> pa.Table:
    """The table without the columns that differ between two runs of the same input and model."""
    return table.drop_columns([name for name in RUN_VARYING if name in table.column_names])


def read_scores(path) -> pa.Table:
    """A scored file as two runs of the same input and model must agree on it, bit for bit."""
    import pyarrow.parquet as pq

    return without_run_columns(pq.read_table(path))


class Crash(Exception):
    """Raised by crash_after's commit hook: the process "dies" right after a commit step."""


def crash_after(step: str, count: int):
    """A commit hook (io.writers.commit_hook) that raises when `step` has completed `count` times."""
    seen = []

    def hook(name: str) -> None:
        if name == step:
            seen.append(name)
            if len(seen) == count:
                raise Crash(step)

    return hook


WORDS = [
    "good",
    "great",
    "fine",
    "bad",
    "awful",
    "boring",
    "film",
    "movie",
    "plot",
    "acting",
    "story",
    "the",
    "a",
    "is",
    "was",
    "and",
    "it",
    "i",
    "loved",
    "hated",
    "music",
    "ending",
    "scene",
]


def random_review(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words)) + rng.choice([".", "!", "?"])


def score_files(paths, output, bundle, **options) -> RunSummary:
    """`batchscore run` through the library, quietly."""
    return run_scoring(
        [str(p) for p in paths],
        str(output) if output else None,
        bundle,
        RunOptions(**options),
        progress=False,
        log=lambda m: None,
    )


def crashed_run(monkeypatch, inputs, output, bundle, step: str, nth: int, **options) -> None:
    """Score until the commit hook raises at the nth `step`, then restore normal commits."""
    monkeypatch.setattr(writers, "commit_hook", crash_after(step, nth))
    with pytest.raises(Crash):
        score_files(inputs, output, bundle, **options)
    monkeypatch.setattr(writers, "commit_hook", None)


# A `batchscore` process whose commit hook acts at the nth completion of `step`: "exit" (os._exit(77),
# no cleanup at all), a signal name (sent to itself), or "hold": say "held" on the file descriptor
# in HOLD_FDS and wait there until the test releases it (or kills the process).
HOOKED_RUN = """
import os, signal, sys
import batchscore.io.writers as writers
action, step, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = []
def hook(name):
    if name == step:
        seen.append(name)
        if len(seen) == nth:
            if action == "exit":
                os._exit(77)
            if action == "hold":
                held, release = (int(fd) for fd in os.environ["HOLD_FDS"].split(","))
                os.write(held, b"held\\n")
                os.read(release, 1)
                return
            os.kill(os.getpid(), getattr(signal, action))
writers.commit_hook = hook
from batchscore.__main__ import main
sys.argv = ["batchscore", *sys.argv[4:]]
main()
"""


class HeldRun:
    """A `batchscore` process stopped at a known point of its commit protocol: the test acts on it
    there (a signal, SIGKILL, a second run) at that point exactly, not after a guessed delay."""

    def __init__(self, step: str, nth: int, args: list[str], **popen):
        held_read, held_write = os.pipe()
        release_read, self._release = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOOKED_RUN, "hold", step, str(nth), *args],
            pass_fds=(held_write, release_read),
            env={**os.environ, "HOLD_FDS": f"{held_write},{release_read}"},
            **popen,
        )
        os.close(held_write)
        os.close(release_read)
        self._held = held_read
        self.pid = self.process.pid

    def wait_until_held(self, timeout: float = 300) -> None:
        """Until the process says it is at the step; fails if it ends first (or never gets there)."""
        ready, _, _ = select.select([self._held], [], [], timeout)
        assert ready, f"the run did not reach the step in {timeout} s"
        assert os.read(self._held, 5) == b"held\n", "the run ended before it reached the step"

    def release(self) -> None:
        os.write(self._release, b"g")

    def kill(self) -> int:
        """SIGKILL where it is held; its exit status (-9)."""
        self.process.send_signal(signal.SIGKILL)
        return self.process.wait()

    def close(self) -> None:
        for fd in (self._held, self._release):
            os.close(fd)
        if self.process.poll() is None:
            self.kill()


def quiet(message: str) -> None:
    pass
