"""Whether two checkouts of batchscore write the same outputs and train the same weights.

    git worktree add /tmp/before <commit>
    python -m benchmarks.compare_outputs /tmp/before            # against this checkout

Each checkout runs its own `batchscore` (its own process, PYTHONPATH set to it) over the same inputs:
  sample     `run` on the bundled sample (sample_data/reviews.parquet);
  shards     5,000 IMDb test reviews in 10 Parquet shards, local engine;
  ray        the same shards with `--engine ray` (skipped with --no-ray);
  killed     the shards with small windows, SIGKILL after the third committed window, then `--resume`;
  cross      the shards started by the local engine, killed, resumed by the Ray engine (--no-ray skips);
  spark      the shards' first 1,000 reviews through batchscore.spark on a local Spark session
             (skipped with --no-spark), sorted by id;
  train      a short `batchscore train` (1,200 IMDb reviews, one language-model and one classifier
             epoch, seed 0): the weights' sha256 must match.
Both score with one bundle (--model; default: BEFORE's bundled model). Every output file must
match column for column and row for row; `scored_at` and `run_id` name the run
that wrote it, so they are left out. Exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
IMDB = ROOT.parent / "shared" / "data" / "imdb"
RUN_COLUMNS = ("scored_at", "run_id")  # differ by construction between two runs


def batchscore(tree: Path, args: list[str], cwd: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "batchscore", *args]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.Popen(command, cwd=cwd, env=env, **pipes, **popen)


def finished(process: subprocess.Popen, what: str, allowed: tuple[int, ...] = (0,)) -> None:
    _, err = process.communicate()
    if process.returncode not in allowed:
        raise SystemExit(f"{what}: exit {process.returncode}\n{err.decode()[-3000:]}")


def make_inputs(folder: Path) -> dict[str, Path]:
    shards = folder / "shards"
    shards.mkdir()
    test = pq.read_table(IMDB / "test.parquet", columns=["id", "text", "rating"])
    sample = test.take(np.random.default_rng(0).permutation(test.num_rows)[:5000])
    for i in range(10):
        pq.write_table(sample.slice(i * 500, 500), shards / f"part-{i:02d}.parquet")
    train = pq.read_table(IMDB / "train.parquet", columns=["text", "label"])
    small = train.take(np.random.default_rng(1).permutation(train.num_rows)[:1200])
    pq.write_table(small, folder / "train-small.parquet")
    return {"shards": shards, "train": folder / "train-small.parquet"}


def killed_then_resumed(
    tree: Path, inputs: Path, out: Path, work: Path, model: Path, resume_args: list[str]
) -> None:
    """A local run with 100-row windows, SIGKILLed once three windows are committed, then resumed."""
    common = ["run", str(inputs), "-o", str(out), "--model", str(model), "--no-progress"]
    run = batchscore(tree, [*common, "--window-rows", "100"], work)
    deadline = time.time() + 600
    while time.time() < deadline and run.poll() is None:
        parts = list(out.glob(".*.parts/part-*.parquet-part")) if out.exists() else []
        if len(parts) >= 3:
            run.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    run.communicate()
    if run.returncode != -signal.SIGKILL:
        raise SystemExit(f"{tree}: the run ended (exit {run.returncode}) before it could be killed")
    finished(batchscore(tree, [*common, "--resume", *resume_args], work), f"{tree}: resume")


SPARK = """
import sys
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from batchscore.spark import score_dataframe
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.sql.shuffle.partitions", "2").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
frame = spark.read.parquet(*sys.argv[1:3]).repartition(3)
scored = score_dataframe(frame, sys.argv[3]).toArrow().sort_by("id").replace_schema_metadata(None)
pq.write_table(scored, sys.argv[4])
spark.stop()
"""


def spark_scored(tree: Path, shards: Path, model: Path, out: Path, work: Path) -> None:
    """batchscore.spark of `tree` over the first two shards, sorted by id, written to `out`."""
    out.parent.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    files = [str(shards / "part-00.parquet"), str(shards / "part-01.parquet")]
    command = [sys.executable, "-c", SPARK, *files, str(model), str(out)]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: spark: exit {done.returncode}\n{done.stderr[-3000:]}")


def scenarios(
    tree: Path, inputs: dict[str, Path], work: Path, with_ray: bool, model: Path, with_spark: bool = True
) -> dict[str, Path]:
    """Run every scenario with `tree`'s batchscore and `model`; the output folder of each."""
    names = ("sample", "shards", "ray", "killed", "cross", "spark", "train")
    outs = {name: work / name for name in names}
    sample = ROOT / "sample_data" / "reviews.parquet"
    shards = ["run", str(inputs["shards"]), "--model", str(model), "-o"]
    sample_out = outs["sample"] / "reviews.parquet"
    finished(
        batchscore(tree, ["run", str(sample), "-o", str(sample_out), "--model", str(model)], work), "sample"
    )
    finished(batchscore(tree, [*shards, str(outs["shards"])], work), "shards")
    if with_ray:
        finished(batchscore(tree, [*shards, str(outs["ray"]), "--engine", "ray"], work), "ray")
    killed_then_resumed(tree, inputs["shards"], outs["killed"], work, model, [])
    if with_ray:
        killed_then_resumed(tree, inputs["shards"], outs["cross"], work, model, ["--engine", "ray"])
    if with_spark:
        spark_scored(tree, inputs["shards"], model, outs["spark"] / "scored.parquet", work)
    train = ["train", "--train", str(inputs["train"]), "--embeddings", "glove-6b-50d", "--epochs", "1",
             "--lm-pretrain-epochs", "1", "--max-tokens", "128", "--head-tokens", "32", "--hidden", "32",
             "--pooling", "max,mean", "--ema-decay", "0.99", "--average-epochs", "--seed", "0",
             "--no-progress", "--checkpoint-dir", str(work / "ckpt"), "-o", str(outs["train"])]  # fmt: skip
    finished(batchscore(tree, train, work), "train")
    return outs


def table_of(path: Path) -> pa.Table:
    table = pq.read_table(path)
    return table.drop_columns([c for c in RUN_COLUMNS if c in table.column_names])


def differences(before: dict[str, Path], after: dict[str, Path]) -> list[str]:
    found = []
    for name, folder in before.items():
        if name == "train":
            weights = [hashlib.sha256((out[name] / "weights.safetensors").read_bytes()).hexdigest()
                       for out in (before, after)]  # fmt: skip
            same = weights[0] == weights[1]
            verdict = "same" if same else "DIFFER"
            print(f"train      weights sha256 {weights[0][:16]} vs {weights[1][:16]}: {verdict}")
            found += [] if same else ["train: weights differ"]
            continue
        if not folder.exists():
            continue
        files = sorted(p.relative_to(folder) for p in folder.rglob("*.parquet"))
        other = sorted(p.relative_to(after[name]) for p in after[name].rglob("*.parquet"))
        if files != other:
            found.append(f"{name}: output files differ: {files} vs {other}")
            continue
        rows = 0
        for relative in files:
            a, b = table_of(folder / relative), table_of(after[name] / relative)
            rows += a.num_rows
            if a.schema != b.schema or not a.equals(b):
                found.append(f"{name}/{relative}: contents differ")
        verdict = "DIFFER" if any(f.startswith(f"{name}") for f in found) else "same"
        columns = table_of(folder / files[0]).column_names
        print(f"{name:10s} {len(files)} file(s), {rows:,} rows, columns {columns}: {verdict}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", type=Path, help="the other checkout (e.g. a git worktree)")
    parser.add_argument("after", type=Path, nargs="?", default=ROOT, help="default: this checkout")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray scenarios")
    parser.add_argument("--no-spark", action="store_true", help="skip the Spark scenario")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="the bundle both score with (default: BEFORE's bundled model)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchscore-compare-") as scratch:
        base = Path(scratch)
        inputs = make_inputs(base)
        model = (args.model or args.before / "batchscore" / "models" / "imdb-bilstm-glove50").resolve()
        outs = {}
        for name in ("before", "after"):
            tree = getattr(args, name).resolve()
            (base / name).mkdir()
            started = time.perf_counter()
            outs[name] = scenarios(tree, inputs, base / name, not args.no_ray, model, not args.no_spark)
            print(f"{name}: {tree} ({time.perf_counter() - started:.0f} s)", flush=True)
        found = differences(outs["before"], outs["after"])
    for line in found:
        print("DIFFERENCE", line)
    print("identical" if not found else f"{len(found)} difference(s)")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
