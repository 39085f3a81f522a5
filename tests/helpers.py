"""Helpers shared by test modules (fixtures are in conftest.py)."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pytest

from batchscore.io import writers
from batchscore.report import RunSummary
from batchscore.run.options import RunOptions
from batchscore.runner import run_scoring

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


# a `batchscore` process whose commit hook acts at the nth `step` (exit 77, hang, or a signal)
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
            if action == "hang":
                signal.pause()  # holds its output lock until killed
            os.kill(os.getpid(), getattr(signal, action))
writers.commit_hook = hook
from batchscore.__main__ import main
sys.argv = ["batchscore", *sys.argv[4:]]
main()
"""


def quiet(message: str) -> None:
    pass
