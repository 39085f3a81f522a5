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
