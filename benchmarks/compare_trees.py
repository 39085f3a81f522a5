"""The forward section of benchmarks.run, and an end-to-end `batchscore run`, for two checkouts of
batchscore, alternating, same inputs.

    git worktree add /tmp/before <commit>
    python -m benchmarks.compare_trees /tmp/before            # vs this checkout
Each tree runs in its own process (its own batchscore and benchmarks packages) on the same 5,000
IMDb test reviews, against PyTorch in that process, `--repeats` times each, alternating, so a change
to the forward pass is measured against the code before it on the same machine in one run. Then
each tree's `batchscore run` scores the same reviews from a Parquet file with the same bundle (the
BEFORE tree's bundled model), alternating too: the whole path, reading to the written file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from benchmarks.common import DEFAULT_IMDB, ROOT

PROBE = """
import json, sys
import numpy as np, pyarrow.parquet as pq
try:
    from batchscore.model.bundle import load_bundle
except ImportError:  # a checkout from before the layered tree
    from batchscore.bundle import load_bundle
try:
    from benchmarks.common import bench_forward
except ImportError:  # a checkout from before benchmarks/common.py
    from benchmarks.run import bench_forward
imdb = pq.read_table(sys.argv[1], columns=["id", "text"])
sample = imdb.take(np.random.default_rng(0).permutation(imdb.num_rows)[: int(sys.argv[2])])
print("RESULT", json.dumps(bench_forward(load_bundle(), sample.column("text").combine_chunks(), "imdb")))
"""


def forward_in(tree: Path, imdb: Path, rows: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(imdb), str(rows)], cwd=tree, env=env, capture_output=True, text=True
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{tree}: forward probe failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[0][len("RESULT ") :])


def end_to_end_in(tree: Path, source: Path, model: Path, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "batchscore", "run", str(source), "-o", str(out), "--model", str(model)]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "--overwrite", "--no-progress"], cwd=tree, env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"{tree}: batchscore run failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", type=Path, help="the other checkout (e.g. a git worktree)")
    parser.add_argument("after", type=Path, nargs="?", default=ROOT, help="default: this checkout")
    parser.add_argument("--imdb", type=Path, default=DEFAULT_IMDB)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(args.repeats):
        for name in ("before", "after"):
            r = forward_in(getattr(args, name).resolve(), args.imdb.resolve(), args.rows)
            rates[name].append(r["batchscore_tokens_s"])
            print(
                f"{name:>6s} {getattr(args, name)}: batchscore {r['batchscore_tokens_s']:,.0f} tok/s, "
                f"PyTorch {r['torch_tokens_s']:,.0f} tok/s, x{r['ratio_vs_torch']:.2f} PyTorch, "
                f"max |dp| vs PyTorch {r['max_prob_difference_vs_torch']:.1e}",
                flush=True,
            )
    best = {name: max(values) for name, values in rates.items()}
    print(f"forward, after / before (best of {args.repeats}): {best['after'] / best['before']:.2f}x")
    model = (args.before / "batchscore" / "models" / "imdb-bilstm-glove50").resolve()
    with tempfile.TemporaryDirectory() as scratch:
        imdb = pq.read_table(args.imdb, columns=["id", "text"])
        source = Path(scratch) / "reviews.parquet"
        pq.write_table(imdb.take(np.random.default_rng(0).permutation(imdb.num_rows)[: args.rows]), source)
        seconds: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.repeats):
            for name in ("before", "after"):
                tree = getattr(args, name).resolve()
                seconds[name].append(end_to_end_in(tree, source, model, Path(scratch) / f"{name}.parquet"))
                print(
                    f"{name:>6s} {tree}: batchscore run, {args.rows:,} reviews: {seconds[name][-1]:.2f} s",
                    flush=True,
                )
    fastest = {name: min(values) for name, values in seconds.items()}
    speed = fastest["before"] / fastest["after"]
    print(f"end to end, after / before speed (best of {args.repeats}): {speed:.2f}x")


if __name__ == "__main__":
    main()
