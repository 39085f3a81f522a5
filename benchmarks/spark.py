"""batchscore.spark in local[2] against `batchscore run` on the same rows, in one process.

    python -m benchmarks.spark [--rows 20000] [--imdb ../shared/data/imdb/test.parquet]

Both score the same IMDb reviews with the bundled model; `batchscore run` goes first (its time
includes start-up and compilation, as a user sees it), then the Spark job writes Parquet (its time
includes the Python workers' model load and compilation, but not the Spark session's start). The
two outputs are compared value for value (provenance columns aside). Prints the CPU and the ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from batchscore.inference.device import cpu_summary

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IMDB = ROOT.parent / "shared" / "data" / "imdb" / "test.parquet"
RUN_VARYING = ["run_id", "scored_at"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--imdb", type=Path, default=DEFAULT_IMDB)
    args = parser.parse_args()
    from pyspark.sql import SparkSession

    from batchscore.spark import score_dataframe

    work = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    table = pq.read_table(args.imdb, columns=["text"]).slice(0, args.rows)
    table = table.append_column("key", pa.array(range(table.num_rows), pa.int64()))  # IMDb ids repeat
    pq.write_table(table, work / "in.parquet", row_group_size=5000)
    print(f"cpu: {cpu_summary()}; {table.num_rows:,} IMDb reviews")

    started = time.perf_counter()
    command = [
        sys.executable,
        "-m",
        "batchscore",
        "run",
        str(work / "in.parquet"),
        "-o",
        str(work / "run.parquet"),
    ]
    subprocess.run([*command, "--id-column", "key", "-q"], check=True)
    run_seconds = time.perf_counter() - started

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.files.maxPartitionBytes", str(4 << 20))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    started = time.perf_counter()
    score_dataframe(spark.read.parquet(str(work / "in.parquet"))).write.parquet(str(work / "spark"))
    spark_seconds = time.perf_counter() - started
    spark.stop()

    expected = pq.read_table(work / "run.parquet").drop_columns(RUN_VARYING).replace_schema_metadata(None)
    got = pq.read_table(work / "spark").drop_columns(RUN_VARYING).sort_by("key").replace_schema_metadata(None)
    same = got.num_rows == expected.num_rows and all(
        got.column(name).cast(expected.schema.field(name).type).equals(expected.column(name))
        for name in expected.column_names
    )
    print(f"batchscore run: {run_seconds:.1f} s ({table.num_rows / run_seconds:,.0f} reviews/s)")
    print(
        f"batchscore.spark local[2]: {spark_seconds:.1f} s ({table.num_rows / spark_seconds:,.0f} reviews/s)"
    )
    print(f"spark / run time: {spark_seconds / run_seconds:.2f}x (target <= 1.5x); outputs equal: {same}")
    if not same:
        raise SystemExit("the Spark output differs from batchscore run's")


if __name__ == "__main__":
    main()
