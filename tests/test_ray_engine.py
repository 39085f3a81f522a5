"""The Ray Data engine on a local Ray instance gives the local engine's results."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from batchscore.errors import InputError
from batchscore.run.options import RunOptions
from batchscore.runner import run_scoring
from tests.helpers import read_scores
from tests.test_resume import HOOKED_RUN

QUIET = {"progress": False, "log": lambda m: None}

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_engine_matches_local_engine(tmp_path, tiny_bundle, reviews_table):
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
        [str(shards)], str(tmp_path / "ray"), tiny_bundle, options, engine="ray", **QUIET
    )
    assert local.rows == distributed.rows == 300 and distributed.error_rows == 1
    for name in ("a.parquet", "b.parquet"):
        a = read_scores(tmp_path / "local" / name)
        b = read_scores(tmp_path / "ray" / name)
        assert a.equals(b), name  # every column, scores bit for bit
        assert a.schema.metadata[b"batchscore.profile"] == b.schema.metadata[b"batchscore.profile"]
    assert distributed.to_dict()["profile"] == local.to_dict()["profile"]
    assert distributed.stage_seconds["tokenize"] > 0 and distributed.stage_seconds["forward"] > 0


def test_ray_resume_scores_only_the_rows_left(tmp_path, tiny_bundle, reviews_table):
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
        [str(source)], str(output), tiny_bundle, replace(options, resume=True), engine="ray", **QUIET
    )
    assert resumed.rows == 300 and resumed.rows_scored_now == 150  # 3 windows of 50 were committed
    assert read_scores(output).equals(read_scores(tmp_path / "ref.parquet"))
    assert resumed.to_dict()["profile"] == reference.to_dict()["profile"]


def test_ray_bad_file_part_way_is_skipped_or_fails(tmp_path, tiny_bundle, reviews_table):
    shards = tmp_path / "in"
    shards.mkdir()
    pq.write_table(reviews_table.slice(0, 100), shards / "a.parquet")
    lines = ["review_id,text"] + [f"{i},fine film" for i in range(60)] + ["60,a,b,c"]
    (shards / "b.csv").write_text("\n".join(lines) + "\n")
    options = RunOptions(window_rows=16, skip_bad_files=True)
    summary = run_scoring([str(shards)], str(tmp_path / "out"), tiny_bundle, options, engine="ray", **QUIET)
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
            engine="ray",
            **QUIET,
        )


def test_ray_run_is_quiet(tmp_path, tiny_bundle, reviews_table):
    pq.write_table(reviews_table, tmp_path / "in.parquet")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchscore",
            "run",
            str(tmp_path / "in.parquet"),
            "--engine",
            "ray",
            "--model",
            str(tiny_bundle),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    noise = [line for line in result.stderr.splitlines() if not re.match(r"(\S+Z )?batchscore: ", line)]
    assert noise == []


def test_the_driver_may_hold_a_lock_per_output():
    import resource

    from batchscore.engines.ray import allow_open_files

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert allow_open_files(600) == min(600, hard) == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert allow_open_files(300) == min(600, hard)  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_worker_with_another_bundle_at_the_same_path_fails_the_run(tmp_path, tiny_bundle, reviews_table):
    """Each Ray node loads the bundle from its own disk: a node holding another model at that path
    must stop the run, not score with it under the driver's model name and sha256."""
    import shutil

    from batchscore.bundle import load_bundle
    from batchscore.errors import ModelError
    from batchscore.run.driver import score_files
    from batchscore.runner import make_engine

    pq.write_table(reviews_table, tmp_path / "in.parquet")
    worker_copy = tmp_path / "bundle-on-worker"
    shutil.copytree(tiny_bundle, worker_copy)
    config = (worker_copy / "config.json").read_text()
    (worker_copy / "config.json").write_text(config.replace('"temperature": 1.0', '"temperature": 1.5'))
    driver_bundle = load_bundle(tiny_bundle)
    assert load_bundle(worker_copy).bundle_sha256 != driver_bundle.bundle_sha256
    engine = make_engine("ray", driver_bundle, worker_copy, RunOptions())
    with pytest.raises(ModelError, match="is not the bundle the driver loaded"):
        score_files(
            driver_bundle, RunOptions(), engine, [str(tmp_path / "in.parquet")], str(tmp_path / "out.parquet")
        )
    assert not (tmp_path / "out.parquet").exists()
