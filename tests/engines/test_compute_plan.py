"""One compute plan for every engine: GPU batch sizes on GPU actors, the precision that runs recorded
(and run) by both engines, an output started by one engine resumed by the other."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from batchscore.inference import compute
from batchscore.inference import device as runtime
from batchscore.inference.batching import GPU_BUCKETS, BucketSpec
from batchscore.inference.compute import actor_plan, batch_plan
from batchscore.interfaces.run_command import run_scoring
from batchscore.io import writers
from batchscore.pipeline.options import RunOptions
from tests.helpers import Crash, crash_after, read_scores

QUIET = {"progress": False, "log": lambda m: None}
NO_BF16_CPU = {"avx2", "fma"}  # an AVX2 machine: bfloat16 would be emulated, so float32 runs


def test_gpu_actors_get_the_gpu_batch_plan_and_cpu_actors_the_cpu_one():
    on_gpus, actors = actor_plan({"GPU": 2.0, "CPU": 16.0}, "auto", "float32", BucketSpec())
    assert on_gpus.platform == "gpu" and actors == 2 and on_gpus.buckets == GPU_BUCKETS
    on_cpus, actors = actor_plan({"GPU": 2.0, "CPU": 16.0}, "cpu", "float32", BucketSpec())
    assert on_cpus.platform == "cpu" and actors == 8 and on_cpus.buckets == BucketSpec()
    asked = BucketSpec(token_budget=4096, max_rows=64)
    assert actor_plan({"GPU": 1.0}, "auto", "float32", asked)[0].buckets == asked  # sizes given are kept
    assert batch_plan("gpu", BucketSpec()) == GPU_BUCKETS and batch_plan("cpu", BucketSpec()) == BucketSpec()


def test_cpu_actors_run_the_precision_the_cpu_can_run(monkeypatch):
    monkeypatch.setattr(compute, "cpu_flags", lambda: NO_BF16_CPU)
    plan, _ = actor_plan({"CPU": 4.0}, "auto", "bfloat16", BucketSpec())
    assert plan.precision == "float32" and "float32" in plan.description
    monkeypatch.setattr(compute, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert actor_plan({"CPU": 4.0}, "auto", "bfloat16", BucketSpec())[0].precision == "bfloat16"
    assert actor_plan({"GPU": 1.0}, "auto", "bfloat16", BucketSpec())[0].precision == "bfloat16"


def _score(source, output, bundle, options=None, engine="local", **quiet):
    return run_scoring(
        [str(source)], str(output), bundle, options or RunOptions(), engine=engine, **(quiet or QUIET)
    )


def _fingerprint(path) -> dict:
    return json.loads(pq.read_metadata(path).metadata[b"batchscore.fingerprint"])


def test_the_local_engine_records_the_precision_that_ran(tmp_path, tiny_bundle, reviews_table, monkeypatch):
    monkeypatch.setattr(runtime, "cpu_flags", lambda: NO_BF16_CPU)
    pq.write_table(reviews_table, tmp_path / "in.parquet")
    asked = run_scoring([str(tmp_path / "in.parquet")], str(tmp_path / "bf16.parquet"), tiny_bundle,
                        RunOptions(precision="bfloat16"), **QUIET)  # fmt: skip
    assert "bfloat16 asked" in asked.compute
    assert _fingerprint(tmp_path / "bf16.parquet")["precision"] == "float32"
    run_scoring(
        [str(tmp_path / "in.parquet")], str(tmp_path / "f32.parquet"), tiny_bundle, RunOptions(), **QUIET
    )
    assert read_scores(tmp_path / "bf16.parquet").equals(read_scores(tmp_path / "f32.parquet"))


ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_the_ray_engine_records_and_runs_the_precision_the_plan_says(
    local_ray, tmp_path, tiny_bundle, reviews_table, monkeypatch
):
    """On a CPU without native bfloat16 a bfloat16 request runs as float32 on every actor, and the
    output says so: the same bytes as a float32 run, and a fingerprint a local resume accepts."""
    monkeypatch.setattr(compute, "cpu_flags", lambda: NO_BF16_CPU)
    pq.write_table(reviews_table, tmp_path / "in.parquet")
    run_scoring([str(tmp_path / "in.parquet")], str(tmp_path / "ray.parquet"), tiny_bundle,
                RunOptions(precision="bfloat16"), engine="ray", **QUIET)  # fmt: skip
    run_scoring(
        [str(tmp_path / "in.parquet")], str(tmp_path / "f32.parquet"), tiny_bundle, RunOptions(), **QUIET
    )
    assert _fingerprint(tmp_path / "ray.parquet")["precision"] == "float32"
    assert read_scores(tmp_path / "ray.parquet").equals(read_scores(tmp_path / "f32.parquet"))


@pytest.mark.slow
@pytest.mark.parametrize("first, then", [("local", "ray"), ("ray", "local")])
def test_an_output_started_by_one_engine_is_resumed_by_the_other(
    local_ray, tmp_path, tiny_bundle, reviews_table, monkeypatch, first, then
):
    source, output = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pq.write_table(reviews_table, source, row_group_size=40)
    monkeypatch.setattr(writers, "commit_hook", crash_after("manifest updated", 3))
    with pytest.raises(Crash):
        run_scoring(
            [str(source)], str(output), tiny_bundle, RunOptions(window_rows=40), engine=first, **QUIET
        )
    monkeypatch.setattr(writers, "commit_hook", None)
    committed = json.loads((tmp_path / ".out.parquet.parts" / "manifest.json").read_text())["rows_done"]
    assert 0 < committed < reviews_table.num_rows
    said: list[str] = []
    resumed = run_scoring([str(source)], str(output), tiny_bundle, RunOptions(window_rows=40, resume=True),
                          engine=then, progress=False, log=said.append)  # fmt: skip
    assert any(f"resuming after {committed:,} committed rows" in line for line in said)
    assert resumed.rows_scored_now == reviews_table.num_rows - committed  # continued, not restarted
    run_scoring(
        [str(source)], str(tmp_path / "straight.parquet"), tiny_bundle, RunOptions(window_rows=40), **QUIET
    )
    assert read_scores(output).equals(read_scores(tmp_path / "straight.parquet"))
