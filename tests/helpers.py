"""Helpers shared by test modules."""

from __future__ import annotations

import pyarrow as pa

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
