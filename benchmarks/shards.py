"""Many small shards vs one file with the same rows (the nightly-landing case).

    python -m benchmarks.shards [--shards 40] [--rows 100] [--repeats 2]
Scores SHARDS files of ROWS IMDb test reviews each, and one file holding the same rows, with the
CLI (start-up included, warm compilation cache), alternating, and prints the wall times and ratio.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from benchmarks.common import DEFAULT_IMDB, run_command


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--imdb", type=Path, default=DEFAULT_IMDB)
    parser.add_argument("--shards", type=int, default=40)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    total = args.shards * args.rows
    reviews = pq.read_table(args.imdb, columns=["id", "text"]).slice(0, total)
    with tempfile.TemporaryDirectory(prefix="batchscore-shards-") as tmp:
        work = Path(tmp)
        (work / "shards").mkdir()
        for i in range(args.shards):
            pq.write_table(reviews.slice(i * args.rows, args.rows), work / "shards" / f"part-{i:04d}.parquet")
        pq.write_table(reviews, work / "one.parquet")
        env = {**os.environ, "BATCHSCORE_COMPILATION_CACHE": str(work / "cache")}
        base = ["python", "-m", "batchscore", "run", "--no-progress", "--overwrite", "--id-column", "id"]
        one_cmd = [*base, str(work / "one.parquet"), "-o", str(work / "one.scored.parquet")]
        shards_cmd = [*base, str(work / "shards"), "-o", str(work / "scored")]
        run_command(one_cmd, env)  # fills the compilation cache for both
        run_command(shards_cmd, env)
        one, shards = [], []
        for _ in range(args.repeats):
            one.append(run_command(one_cmd, env)[0])
            shards.append(run_command(shards_cmd, env)[0])
        best_one, best_shards = min(one), min(shards)
        print(f"{total:,} reviews in one file:          {best_one:6.1f} s  (runs: {one})")
        print(f"{args.shards} shards x {args.rows} reviews:          {best_shards:6.1f} s  (runs: {shards})")
        print(f"shards / one file: {best_shards / best_one:.2f}x  (target <= 1.3x)")


if __name__ == "__main__":
    main()
