"""The Ray engine on many shards vs the local engine, and a Ray resume.

    python -m benchmarks.ray_shards [--shards 200] [--rows 250] [--resume-rows 50000]
1. SHARDS files of ROWS IMDb test reviews (the test split repeated as needed), scored by the CLI with
   `--engine local` and `--engine ray` (a local Ray instance on this machine; start-up included, warm
   compilation cache), then every output compared column by column.
2. A ROWS-row file left half scored (a run stopped after its middle commit), resumed with
   `--engine ray`: the summary's rows_scored_this_run must be the rows left, and the time is
   compared with scoring the whole file on Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import DEFAULT_IMDB, run_command

STOP_AFTER_COMMIT = """
import os, sys
import batchscore.io.writers as writers
stop_at, seen = int(sys.argv[1]), []
def hook(step):
    if step == "manifest updated":
        seen.append(step)
        if len(seen) == stop_at:
            os._exit(0)
writers.commit_hook = hook
from batchscore.__main__ import main
sys.argv = ["batchscore", *sys.argv[2:]]
main()
"""


def reviews(imdb: Path, rows: int) -> pa.Table:
    table = pq.read_table(imdb, columns=["text"])
    repeats = -(-rows // table.num_rows)
    table = pa.concat_tables([table] * repeats).slice(0, rows)
    return table.append_column("id", pa.array(range(rows), pa.int64()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--imdb", type=Path, default=DEFAULT_IMDB)
    parser.add_argument("--shards", type=int, default=200)
    parser.add_argument("--rows", type=int, default=250)
    parser.add_argument("--resume-rows", type=int, default=50_000)
    parser.add_argument("--window-rows", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchscore-ray-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "BATCHSCORE_COMPILATION_CACHE": str(work / "cache")}
        base = [sys.executable, "-m", "batchscore", "run", "--no-progress", "--id-column", "id"]
        base += ["--window-rows", str(args.window_rows)]
        total = args.shards * args.rows
        table = reviews(args.imdb, total)
        (work / "shards").mkdir()
        for i in range(args.shards):
            pq.write_table(table.slice(i * args.rows, args.rows), work / "shards" / f"part-{i:04d}.parquet")
        pq.write_table(table.slice(0, 50), work / "warm.parquet")
        run_command([*base, str(work / "warm.parquet"), "-o", str(work / "warm.out.parquet")], env)  # cache
        times = {}
        for engine in ("local", "ray"):
            command = [*base, str(work / "shards"), "-o", str(work / engine), "--engine", engine]
            command += ["--summary-json", str(work / f"{engine}.json")]
            times[engine] = run_command(command, env)[0]
        names = sorted(p.name for p in (work / "local").glob("*.parquet"))
        equal = all(pq.read_table(work / "local" / n).equals(pq.read_table(work / "ray" / n)) for n in names)
        stages = json.loads((work / "ray.json").read_text())["stage_seconds"]
        print(
            f"{args.shards} shards x {args.rows} IMDb reviews ({total:,} rows), CLI wall time incl. start-up"
        )
        print(f"  --engine local: {times['local']:7.1f} s")
        print(
            f"  --engine ray:   {times['ray']:7.1f} s   ray / local: "
            f"{times['ray'] / times['local']:.2f}x (target <= 1.5x)"
        )
        print(
            "  ray stage seconds (read/tokenize/forward summed over the cluster, write on the driver): "
            f"{stages}"
        )
        print(f"  outputs identical, every column, {len(names)} files: {equal}")

        source = work / "big.parquet"
        pq.write_table(reviews(args.imdb, args.resume_rows), source, row_group_size=args.window_rows)
        half = args.resume_rows // args.window_rows // 2
        output = work / "big.out.parquet"
        stop = [sys.executable, "-c", STOP_AFTER_COMMIT, str(half), "run", str(source), "-o", str(output)]
        subprocess.run([*stop, *base[4:]], env=env, check=True)
        resume = [*base, str(source), "-o", str(output), "--resume", "--engine", "ray"]
        resumed_s = run_command([*resume, "--summary-json", str(work / "resume.json")], env)[0]
        summary = json.loads((work / "resume.json").read_text())
        full_s = run_command([*base, str(source), "-o", str(work / "full.parquet"), "--engine", "ray"], env)[
            0
        ]
        same = pq.read_table(output).equals(pq.read_table(work / "full.parquet"))
        print(
            f"resume on Ray of a {args.resume_rows:,}-row file stopped after "
            f"{half * args.window_rows:,} rows:"
        )
        print(f"  rows scored by the resumed run: {summary['rows_scored_this_run']:,} of {summary['rows']:,}")
        print(
            f"  resumed run {resumed_s:.1f} s vs the whole file on Ray {full_s:.1f} s; output equal: {same}"
        )


if __name__ == "__main__":
    main()
