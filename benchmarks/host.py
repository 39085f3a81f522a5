"""Host-side throughput with the model replaced by a no-op (can the host feed a GPU?).

    python -m benchmarks.host [--rows 25000] [--repeats 2]
Runs the local engine's own read -> clean/tokenize/encode -> bucket/pad path over IMDb test reviews,
with --host-workers 1 and with one worker per core, alternating, and prints reviews/s, the speed-up
and reviews/s per core, from which a 16-core GPU host can be projected. The forward pass is replaced
by a function returning zeros, so only host work is timed (reading stays on one thread; tokenizing
and padding run in the pool).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

import batchscore.inference.forward as scoring
from batchscore.inference.batching import BucketSpec
from batchscore.inference.compute import local_plan, truncation_for
from batchscore.inference.scorer import WindowScorer
from batchscore.io.paths import discover_inputs
from batchscore.io.readers import ReadOptions, ShardReader
from batchscore.model.bundle import load_bundle
from benchmarks.common import DEFAULT_IMDB


def no_forward(config, precision, mesh):
    """What Scorer gets instead of the compiled pass: zeros of the right shape."""
    return lambda weights, ids, lengths: np.zeros((ids.shape[0], config.num_classes), np.float32)


def host_pass(scoring: WindowScorer, source: Path) -> float:
    """Seconds to read, encode and pad every row of `source` once."""
    started = time.perf_counter()
    (input_file,) = discover_inputs([str(source)])
    reader = ShardReader(input_file, ReadOptions())
    reader.schema()
    for table in reader.windows():
        window = scoring.window(table, 0, "text")
        scoring.scorer.logits(window.encoded, window.scorable)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--imdb", type=Path, default=DEFAULT_IMDB)
    parser.add_argument("--rows", type=int, default=25_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    scoring.sharded_scoring = no_forward
    cores = os.cpu_count() or 1
    bundle = load_bundle()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "reviews.parquet"
        pq.write_table(pq.read_table(args.imdb, columns=["text"]).slice(0, args.rows), source)
        compute = local_plan("auto", "float32", BucketSpec())
        truncation = truncation_for(bundle, None)
        jobs = {n: WindowScorer(bundle, compute, truncation, n) for n in sorted({1, cores})}
        for job in jobs.values():
            host_pass(job, source)  # warm-up: page cache, pools
        times: dict[int, list[float]] = {n: [] for n in jobs}
        for _ in range(args.repeats):
            for n, job in jobs.items():
                times[n].append(host_pass(job, source))
    best = {n: min(t) for n, t in times.items()}
    print(
        f"host stages only (read, tokenize/encode, bucket/pad), {args.rows:,} IMDb test reviews, "
        f"{cores} cores"
    )
    for n, seconds in best.items():
        print(
            f"  --host-workers {n}: {args.rows / seconds:9,.0f} reviews/s  ({seconds:.2f} s; runs {times[n]})"
        )
    if cores > 1:
        speedup = best[1] / best[cores]
        print(f"  speed-up with {cores} workers: {speedup:.2f}x (target >= 1.7x on 2 cores)")
        print(f"  per core: {args.rows / best[cores] / cores:,.0f} reviews/s")


if __name__ == "__main__":
    main()
