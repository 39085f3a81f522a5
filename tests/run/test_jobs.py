"""Nightly jobs: date-templated input, Hive partitions read back by DuckDB and pandas, idempotent reruns."""

from __future__ import annotations

import json
from datetime import date

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

from batchscore.base.errors import BatchscoreError
from batchscore.interfaces.cli import main
from batchscore.interfaces.jobs import JobSpec, run_job
from tests.helpers import ROOT, quiet


def test_partitions_are_readable_by_duckdb_and_pandas(job_setup, tmp_path):
    run_job(job_setup, date(2026, 11, 27), progress=False, log=quiet)
    run_job(job_setup, date(2026, 11, 28), progress=False, log=quiet)
    scored = tmp_path / "scored"
    assert (scored / "date=2026-11-27" / "_SUCCESS").exists()
    rows = duckdb.sql(
        "select date, count(*) as n, count(distinct review_id) as ids, "
        "sum(prob_positive + prob_negative) as s "
        f"from read_parquet('{scored}/*/*.parquet', hive_partitioning = true) group by date order by date"
    ).fetchall()
    assert [(str(d), n, ids) for d, n, ids, _ in rows] == [("2026-11-27", 120, 120), ("2026-11-28", 180, 180)]
    assert all(abs(s - n) < 1e-3 for _, n, _, s in rows)
    frame = pd.read_parquet(scored)  # metrics live outside the partitions, so this just works
    assert len(frame) == 300 and set(frame["date"].astype(str)) == {"2026-11-27", "2026-11-28"}
    assert set(frame["label"]) <= {"positive", "negative"}


def test_metrics_json_contents(job_setup, tmp_path):
    metrics = run_job(job_setup, date(2026, 11, 28), progress=False, log=quiet)
    on_disk = json.loads((tmp_path / "scored" / "_metrics" / "date=2026-11-28" / "metrics.json").read_text())
    assert on_disk == metrics
    assert metrics["job"] == "nightly_test" and metrics["date"] == "2026-11-28"
    assert metrics["rows"] == 180 and metrics["error_rows"] == 0
    assert sum(metrics["labels"].values()) == 180
    assert 0 < metrics["mean_prob_positive"] < 1
    assert metrics["model"]["name"] == "tiny-test" and len(metrics["model"]["weights_sha256"]) == 64
    assert metrics["versions"]["batchscore"] and metrics["rows_per_second"] > 0
    assert len(metrics["outputs"]) == 2


def test_rerunning_a_date_is_idempotent(job_setup, tmp_path):
    first = run_job(job_setup, date(2026, 11, 28), progress=False, log=quiet)
    partition = tmp_path / "scored" / "date=2026-11-28"
    before = {p.name: p.read_bytes() for p in partition.glob("*.parquet")}
    again = run_job(job_setup, date(2026, 11, 28), progress=False, log=quiet)
    assert again["rows"] == first["rows"] and again["labels"] == first["labels"]
    assert {p.name: p.read_bytes() for p in partition.glob("*.parquet")} == before
    assert (partition / "_SUCCESS").exists()
    # the night's record stays the run that scored it; the rerun is recorded beside it
    on_disk = json.loads((tmp_path / "scored" / "_metrics" / "date=2026-11-28" / "metrics.json").read_text())
    assert on_disk == again
    assert {k: v for k, v in again.items() if k != "reruns"} == first
    assert again["rows_scored_this_run"] == 180 and again["rows_per_second"] == first["rows_per_second"]
    (rerun,) = again["reruns"]
    assert rerun["files_already_done"] == 2 and rerun["status"] == "ok" and rerun["run_id"] != first["run_id"]
    third = run_job(job_setup, date(2026, 11, 28), progress=False, log=quiet)
    assert len(third["reruns"]) == 2 and third["run_id"] == first["run_id"]


def test_job_command_and_bad_specs(job_setup, tmp_path):
    result = CliRunner().invoke(main, ["job", str(job_setup), "--date", "2026-11-27", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(main, ["job", str(job_setup), "--date", "27/11/2026"]).exit_code == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[job]\nname = "x"\ninput = "a"\noutput = "b"\nthreshold = 3\n')
    with pytest.raises(BatchscoreError, match=r"unknown \[job\] keys \['threshold'\]"):
        JobSpec.load(bad)
    # a date in output would make a literal "{date}" folder: each date already gets its partition
    for paths, message in (
        ('input = "a/{date}"\noutput = "b/{date}"', r"output = 'b/\{date\}' takes no placeholders"),
        ('input = "a/{date"\noutput = "b"', r"\[job\] input = 'a/\{date': expected '\}'"),
        ('input = "a"\noutput = "b/{"', r"\[job\] output = 'b/\{': Single '\{'"),
    ):
        bad.write_text(f'[job]\nname = "x"\n{paths}\n')
        with pytest.raises(BatchscoreError, match=message):
            JobSpec.load(bad)
        result = CliRunner().invoke(main, ["job", str(bad), "--date", "2026-11-27"])
        assert result.exit_code == 2 and "bad.toml" in result.output


def test_shipped_job_definitions_parse():
    for spec in ROOT.glob("jobs/*.toml"):
        loaded = JobSpec.load(spec)
        assert "{date}" in loaded.input or loaded.name == "sample_local"


def test_a_job_takes_the_csv_and_batch_settings_a_run_takes(job_setup, tmp_path):
    day = tmp_path / "landing" / "2026-11-27"
    (day / "c.csv").write_text("review_id;stars;text\n9001;5;good film\n9002;1;bad film\n")
    text = job_setup.read_text().replace("*.parquet", "*")
    extra = (
        'csv_delimiter = ";"\ncsv_infer_types = true\n'
        + "max_tokens = 20\nhost_workers = 1\nmax_batch_rows = 64\n"
    )
    job_setup.write_text(text + extra)
    spec = JobSpec.load(job_setup)
    options = spec.run_options()
    assert (options.csv_delimiter, options.csv_infer_types, options.max_tokens) == (";", True, 20)
    assert (options.host_workers, options.buckets.max_rows) == (1, 64)
    metrics = run_job(job_setup, date(2026, 11, 27), progress=False, log=quiet)
    assert metrics["rows"] == 122 and metrics["error_rows"] == 0


def nights_of_mixed_formats(job_setup, tmp_path, reviews_table) -> None:
    """Night one Parquet only; night two a CSV only (its values as written, text)."""
    import pyarrow.csv as pacsv

    second = tmp_path / "landing" / "2026-11-28"
    for shard in second.iterdir():
        shard.unlink()
    pacsv.write_csv(reviews_table.slice(120, 180), second / "c.csv")
    job_setup.write_text(job_setup.read_text().replace("*.parquet", "*"))
    for day in (date(2026, 11, 27), date(2026, 11, 28)):
        run_job(job_setup, day, progress=False, log=quiet)


def test_nights_of_parquet_and_of_csv_read_as_one_table(job_setup, tmp_path, reviews_table):
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    nights_of_mixed_formats(job_setup, tmp_path, reviews_table)
    root = tmp_path / "scored"
    csv_night = pq.read_table(root / "date=2026-11-28" / "c.parquet")
    assert (
        csv_night.schema.field("review_id").type == pa.int64()
        and csv_night.schema.field("stars").type == pa.int8()
    )
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 300 and table.schema.field("review_id").type == pa.int64()
    assert sorted(table.column("review_id").to_pylist()) == list(range(5000, 5300))
    every_file = f"read_parquet('{root}/**/*.parquet', hive_partitioning=true)"
    types = duckdb.sql(
        f"select typeof(review_id), typeof(stars), count(*) from {every_file} group by all"
    ).fetchall()
    assert types == [("BIGINT", "TINYINT", 300)]
    frame = pd.read_parquet(root)
    assert len(frame) == 300 and str(frame["review_id"].dtype) == "int64"


def test_a_night_whose_types_break_the_table_is_refused_before_scoring(job_setup, tmp_path, reviews_table):
    import pyarrow as pa
    import pyarrow.parquet as pq

    run_job(job_setup, date(2026, 11, 27), progress=False, log=quiet)
    second = tmp_path / "landing" / "2026-11-28"
    changed = reviews_table.set_column(0, "review_id", pa.array([f"r{i}" for i in range(300)]))
    pq.write_table(changed.slice(120, 60), second / "a.parquet")
    result = CliRunner().invoke(main, ["job", str(job_setup), "--date", "2026-11-28", "--no-progress"])
    assert result.exit_code == 3, result.output
    assert "column 'review_id' is string in this input but int64 in the table" in result.output
    assert "fixed by the job's night 2026-11-27" in result.output
    assert not (tmp_path / "scored" / "date=2026-11-28").exists()
