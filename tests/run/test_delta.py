"""A job writing its nights into a Delta Lake table: one commit per night, every row exactly once
whatever is killed or rerun, the table's schema, read back with deltalake and pyarrow."""

from __future__ import annotations

import json
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchscore.interfaces.jobs import run_job
from batchscore.io import writers
from tests.helpers import Crash, crash_after, quiet

deltalake = pytest.importorskip("deltalake")

NIGHTS = (date(2026, 11, 27), date(2026, 11, 28))


@pytest.fixture
def delta_job(job_setup):
    job_setup.write_text(job_setup.read_text() + 'format = "delta"\n')
    return job_setup


def table_rows(root) -> pa.Table:
    """The table as a reader sees it: the files its log names (deltalake), read with pyarrow."""
    table = deltalake.DeltaTable(str(root))
    return pq.read_table(table.file_uris(), partitioning="hive") if table.file_uris() else pa.table({})


def ids_by_night(root) -> dict[str, list[int]]:
    rows = deltalake.DeltaTable(str(root)).to_pandas()
    return {str(d): sorted(rows[rows["date"] == d]["review_id"]) for d in sorted(rows["date"].unique())}


EXPECTED = {"2026-11-27": list(range(5000, 5120)), "2026-11-28": list(range(5120, 5300))}


def test_each_night_is_one_commit_of_its_rows_with_the_parquet_layouts_columns(delta_job, tmp_path):
    metrics = [run_job(delta_job, day, progress=False, log=quiet) for day in NIGHTS]
    root = tmp_path / "scored"
    assert ids_by_night(root) == EXPECTED
    table = deltalake.DeltaTable(str(root))
    assert table.version() == 1 and [m["delta"]["table_version"] for m in metrics] == [0, 1]
    for day in NIGHTS:
        assert table.transaction_version(f"batchscore:nightly_test:{day.isoformat()}") == 1
    schema = table.schema().to_arrow()
    names = [field.name for field in schema]
    for column in ("review_id", "stars", "label", "prob_positive", "model", "model_sha256", "run_id", "date"):
        assert column in names, column
    assert pa.schema(schema).field("review_id").type == pa.int64()
    assert table.metadata().partition_columns == ["date"]
    read = table_rows(root)
    assert read.num_rows == 300 and sorted(read.column("review_id").to_pylist()) == list(range(5000, 5300))


def test_a_rerun_commits_nothing_and_a_changed_night_replaces_its_rows(delta_job, tmp_path):
    for day in NIGHTS:
        run_job(delta_job, day, progress=False, log=quiet)
    again = run_job(delta_job, NIGHTS[1], progress=False, log=quiet)
    root = tmp_path / "scored"
    assert deltalake.DeltaTable(str(root)).version() == 1  # nothing committed
    assert again["reruns"][0]["status"] == "ok" and ids_by_night(root) == EXPECTED
    (tmp_path / "landing" / "2026-11-28" / "b.parquet").unlink()  # the night changed upstream
    changed = run_job(delta_job, NIGHTS[1], progress=False, log=quiet)
    assert changed["delta"] == {"table_version": 2, "committed_by_this_run": True}
    assert ids_by_night(root) == {**EXPECTED, "2026-11-28": list(range(5120, 5170))}


@pytest.mark.parametrize(
    ("step", "nth"),
    [("manifest updated", 1), ("parts removed", 2), ("night staged", 1), ("night committed", 1)],
)
def test_a_night_killed_at_any_step_holds_every_row_once_after_the_rerun(
    delta_job, tmp_path, monkeypatch, step, nth
):
    run_job(delta_job, NIGHTS[0], progress=False, log=quiet)
    monkeypatch.setattr(writers, "commit_hook", crash_after(step, nth))
    with pytest.raises(Crash):
        run_job(delta_job, NIGHTS[1], progress=False, log=quiet)
    monkeypatch.setattr(writers, "commit_hook", None)
    root = tmp_path / "scored"
    committed = step == "night committed"
    assert ids_by_night(root) == (EXPECTED if committed else {"2026-11-27": EXPECTED["2026-11-27"]})
    metrics = run_job(delta_job, NIGHTS[1], progress=False, log=quiet)
    assert ids_by_night(root) == EXPECTED
    assert metrics["delta"]["committed_by_this_run"] is not committed
    assert deltalake.DeltaTable(str(root)).version() == 1  # one commit per night, whatever happened


def test_files_a_killed_commit_left_are_never_read(delta_job, tmp_path):
    """kill -9 inside the Delta write: data files on disk that no log entry names."""
    run_job(delta_job, NIGHTS[0], progress=False, log=quiet)
    orphan = tmp_path / "scored" / "date=2026-11-28"
    orphan.mkdir()
    pq.write_table(
        pq.read_table(tmp_path / "scored" / "_staging" / "date=2026-11-27"), orphan / "part-x.parquet"
    )
    assert ids_by_night(tmp_path / "scored") == {"2026-11-27": EXPECTED["2026-11-27"]}
    run_job(delta_job, NIGHTS[1], progress=False, log=quiet)
    assert ids_by_night(tmp_path / "scored") == EXPECTED


def test_the_table_refuses_a_night_in_other_types(delta_job, tmp_path, reviews_table):
    run_job(delta_job, NIGHTS[0], progress=False, log=quiet)
    owner = tmp_path / "scored" / "_batchscore_job.json"
    record = json.loads(owner.read_text())
    del record["table"]  # as if the job's fixed types were lost: the Delta table's schema still holds
    owner.write_text(json.dumps(record))
    second = tmp_path / "landing" / "2026-11-28"
    for shard in second.iterdir():
        shard.unlink()
    text_stars = reviews_table.slice(120, 10).set_column(2, "stars", pa.array(["many"] * 10))
    pq.write_table(text_stars, second / "c.parquet")
    from batchscore.base.errors import BatchscoreError

    with pytest.raises(BatchscoreError, match=r"the Delta commit of 2026-11-28 failed"):
        run_job(delta_job, NIGHTS[1], progress=False, log=quiet)
    assert ids_by_night(tmp_path / "scored") == {"2026-11-27": EXPECTED["2026-11-27"]}
    night = json.loads((tmp_path / "scored" / "_metrics" / "date=2026-11-28" / "metrics.json").read_text())
    assert night["status"] == "failed" and night["exit_code"] == 5  # the failed night is recorded


def test_a_parquet_jobs_root_never_becomes_a_delta_table(job_setup, tmp_path):
    run_job(job_setup, NIGHTS[0], progress=False, log=quiet)
    job_setup.write_text(job_setup.read_text() + 'format = "delta"\n')
    from batchscore.base.errors import OutputError

    with pytest.raises(
        OutputError, match=r"format 'parquet'\), not 'nightly_test' \(input .*, format 'delta'\)"
    ):
        run_job(job_setup, NIGHTS[1], progress=False, log=quiet)
    assert not (tmp_path / "scored" / "_delta_log").exists()
