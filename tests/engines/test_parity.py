"""Both engines, one suite: every behaviour here holds for the local engine and for Ray Data alike,
judged against the same local reference run."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from batchscore.base.errors import InputError
from batchscore.interfaces.run_command import run_scoring
from batchscore.pipeline.options import RunOptions
from tests.helpers import HOOKED_RUN, QUIET, read_scores

ENGINES = ["local", pytest.param("ray", marks=pytest.mark.slow)]


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    """The engine under test; Ray gets a local instance of two CPUs for the test."""
    if request.param == "ray":
        ray = pytest.importorskip("ray")
        if not ray.is_initialized():
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            request.addfinalizer(ray.shutdown)
    return request.param


def test_scores_equal_the_local_reference_bit_for_bit(engine, tmp_path, tiny_bundle, reviews_table):
    shards = tmp_path / "in"
    shards.mkdir()
    table = reviews_table.append_column("extra", pa.array([None] * 299 + ["x"], pa.string()))
    texts = table.column("text").to_pylist()
    texts[5] = None  # a bad row travels through Ray too
    table = table.set_column(1, "text", pa.array(texts, pa.string()))
    pq.write_table(table.slice(0, 180), shards / "a.parquet", row_group_size=50)
    pacsv.write_csv(table.slice(180), shards / "b.csv")
    options = RunOptions(window_rows=64, max_error_rate=1.0)
    local = run_scoring([str(shards)], str(tmp_path / "local"), tiny_bundle, options, **QUIET)
    distributed = run_scoring(
        [str(shards)], str(tmp_path / "ray"), tiny_bundle, options, engine=engine, **QUIET
    )
    assert local.rows == distributed.rows == 300 and distributed.error_rows == 1
    for name in ("a.parquet", "b.parquet"):
        a = read_scores(tmp_path / "local" / name)
        b = read_scores(tmp_path / "ray" / name)
        assert a.equals(b), name  # every column, scores bit for bit
        assert a.schema.metadata[b"batchscore.profile"] == b.schema.metadata[b"batchscore.profile"]
    assert distributed.to_dict()["profile"] == local.to_dict()["profile"]
    assert distributed.stage_seconds["tokenize"] > 0 and distributed.stage_seconds["forward"] > 0


def test_a_killed_run_is_resumed_from_its_committed_rows(engine, tmp_path, tiny_bundle, reviews_table):
    source = tmp_path / "in.parquet"
    pq.write_table(reviews_table, source, row_group_size=40)
    options = RunOptions(window_rows=50, id_column="review_id")
    reference = run_scoring([str(source)], str(tmp_path / "ref.parquet"), tiny_bundle, options, **QUIET)
    output = tmp_path / "out.parquet"
    died = subprocess.run(
        [
            sys.executable,
            "-c",
            HOOKED_RUN,
            "exit",
            "manifest updated",
            "3",
            "run",
            str(source),
            "-o",
            str(output),
            "--model",
            str(tiny_bundle),
            "--window-rows",
            "50",
            "--id-column",
            "review_id",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert died.returncode == 77, died.stderr
    resumed = run_scoring(
        [str(source)], str(output), tiny_bundle, replace(options, resume=True), engine=engine, **QUIET
    )
    assert resumed.rows == 300 and resumed.rows_scored_now == 150  # 3 windows of 50 were committed
    assert read_scores(output).equals(read_scores(tmp_path / "ref.parquet"))
    assert resumed.to_dict()["profile"] == reference.to_dict()["profile"]


def test_a_file_bad_part_way_is_skipped_or_fails_the_run(engine, tmp_path, tiny_bundle, reviews_table):
    shards = tmp_path / "in"
    shards.mkdir()
    pq.write_table(reviews_table.slice(0, 100), shards / "a.parquet")
    lines = ["review_id,text"] + [f"{i},fine film" for i in range(60)] + ["60,a,b,c"]
    (shards / "b.csv").write_text("\n".join(lines) + "\n")
    options = RunOptions(window_rows=16, skip_bad_files=True)
    summary = run_scoring([str(shards)], str(tmp_path / "out"), tiny_bundle, options, engine=engine, **QUIET)
    assert summary.files_scored == 1 and len(summary.bad_files) == 1 and "b.csv" in summary.bad_files[0]
    assert (
        not (tmp_path / "out" / "b.parquet").exists() and not (tmp_path / "out" / ".b.parquet.parts").exists()
    )
    with pytest.raises(InputError, match=r"b\.csv"):
        run_scoring(
            [str(shards)],
            str(tmp_path / "out2"),
            tiny_bundle,
            replace(options, skip_bad_files=False),
            engine=engine,
            **QUIET,
        )


def test_invalid_utf8_outside_the_text_is_replaced_and_counted_once(engine, tmp_path, tiny_bundle):
    """Every value with invalid bytes is counted once in the summary, whichever engine read it."""
    notes = pa.array([b"ok" if i % 7 else b"K\xf6ln" for i in range(120)], pa.binary()).view(pa.string())
    pq.write_table(pa.table({"text": ["good film"] * 120, "note": notes}), tmp_path / "in.parquet",
                   row_group_size=30)  # fmt: skip
    options = RunOptions(window_rows=30, keep_text=True)
    summary = run_scoring(
        [str(tmp_path / "in.parquet")],
        str(tmp_path / "o.parquet"),
        tiny_bundle,
        options,
        engine=engine,
        **QUIET,
    )
    assert dict(summary.replaced_utf8) == {"note": 18}
    written = pq.read_table(tmp_path / "o.parquet").column("note").to_pylist()
    assert written.count("K\ufffdln") == 18 and written.count("ok") == 102
