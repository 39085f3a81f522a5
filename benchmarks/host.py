"""Host-side throughput with the model replaced by a no-op (issue 10: can the host feed a GPU?).

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

import batchscore.scoring as scoring
from batchscore.bundle import load_bundle
from batchscore.io.paths import discover_inputs
from batchscore.io.readers import ShardReader
from batchscore.pipeline import RunOptions, ScoringJob
from benchmarks.run import DEFAULT_IMDB


def no_forward(config, params, table, ids, lengths, precision="float32"):
    return np.zeros((ids.shape[0], config.num_classes), np.float32)


def host_pass(job: ScoringJob, source: Path) -> float:
    """Seconds to read, encode and pad every row of `source` once."""
    started = time.perf_counter()
    (input_file,) = discover_inputs([str(source)])
    reader = ShardReader(input_file, job.read_options)
    reader.schema()
    stages = dict.fromkeys(("read", "tokenize"), 0.0)
    for window in job._prepare(reader.windows(), 0, stages):
        ok = np.flatnonzero(window.reasons == None)  # noqa: E711
        job.scorer.logits(window.encoded, ok)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--imdb", type=Path, default=DEFAULT_IMDB)
    parser.add_argument("--rows", type=int, default=25_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    scoring.table_forward_logits = no_forward
    cores = os.cpu_count() or 1
    bundle = load_bundle()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "reviews.parquet"
        pq.write_table(pq.read_table(args.imdb, columns=["text"]).slice(0, args.rows), source)
        jobs = {n: ScoringJob(bundle, RunOptions(host_workers=n)) for n in sorted({1, cores})}
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
