"""Model.score_frame vs `batchscore run`'s tokenize + forward time on the same rows.

    python -m benchmarks.api [--rows 5000]
Both in one process, after one warm-up each (so neither pays compilation): the run's stage times
come from its summary; score_frame is timed whole (tokenize, bucket, forward, output columns).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

import batchscore
from batchscore.interfaces.run_command import run_scoring
from batchscore.pipeline.options import RunOptions
from benchmarks.common import DEFAULT_IMDB


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--imdb", type=Path, default=DEFAULT_IMDB)
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    table = pq.read_table(args.imdb, columns=["id", "text"]).slice(0, args.rows)
    frame = table.to_pandas()
    model = batchscore.load_model()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "reviews.parquet"
        pq.write_table(table, source)
        options = RunOptions(id_column="id", overwrite=True)
        runs = []
        for _ in range(2):  # the first compiles
            summary = run_scoring(
                [str(source)], f"{tmp}/out.parquet", None, options, progress=False, log=lambda m: None
            )
            runs.append(summary.stage_seconds["tokenize"] + summary.stage_seconds["forward"])
    api = []
    for _ in range(2):
        started = time.perf_counter()
        model.score_frame(frame)
        api.append(time.perf_counter() - started)
    print(f"batchscore run, tokenize + forward: {runs[-1]:.2f} s")
    print(f"Model.score_frame, whole call:      {api[-1]:.2f} s")
    print(f"score_frame / run: {api[-1] / runs[-1]:.2f}x  (target <= 1.10x)")


if __name__ == "__main__":
    main()
