"""What only the Ray Data engine has: its logging, the driver's open-file limit, a worker's bundle check.
What both engines share is tested once for each in test_parity.py."""

from __future__ import annotations

import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from batchscore.pipeline.options import RunOptions

QUIET = {"progress": False, "log": lambda m: None}

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


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

    from batchscore.base.process_limits import allow_open_files

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert allow_open_files(600) == min(600, hard) == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert allow_open_files(300) == min(600, hard)  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_worker_with_another_bundle_at_the_same_path_fails_the_run(
    tmp_path, tiny_bundle, reviews_table, monkeypatch
):
    """Each Ray node loads the bundle from its own disk: a node holding another model at that path
    must stop the run, not score with it under the driver's model name and sha256."""
    import shutil

    from batchscore.base.errors import ModelError
    from batchscore.model.bundle import load_bundle
    from batchscore.pipeline import run

    pq.write_table(reviews_table, tmp_path / "in.parquet")
    worker_copy = tmp_path / "bundle-on-worker"
    shutil.copytree(tiny_bundle, worker_copy)
    config = (worker_copy / "config.json").read_text()
    (worker_copy / "config.json").write_text(config.replace('"temperature": 1.0', '"temperature": 1.5'))
    driver_bundle = load_bundle(tiny_bundle)
    assert load_bundle(worker_copy).bundle_sha256 != driver_bundle.bundle_sha256
    # the driver's disk holds one model at the path, the worker's another
    monkeypatch.setattr(run, "load_bundle", lambda path: driver_bundle)
    summary = run.run_files(
        [str(tmp_path / "in.parquet")], str(tmp_path / "out.parquet"), worker_copy, RunOptions(), engine="ray"
    )
    assert isinstance(summary.failure, ModelError) and summary.exit_code == 4
    assert "is not the bundle the driver loaded" in summary.error
    assert not (tmp_path / "out.parquet").exists()


def test_a_cpu_actor_splits_its_batches_over_its_share_of_the_cores(tiny_bundle, monkeypatch):
    """Ray runs one CPU actor per CPUS_PER_ACTOR cores of a node, and every actor process sees all of
    the node's host devices: each must use only its share, not every core the other actors use too."""
    import jax

    import batchscore.inference.device as device
    from batchscore.inference.batching import BucketSpec
    from batchscore.inference.compute import CPUS_PER_ACTOR, actor_plan
    from batchscore.inference.forward import Truncation
    from batchscore.model.bundle import load_bundle
    from batchscore.pipeline.engines.ray import _ScoreActor

    cpus = jax.devices("cpu")
    if len(cpus) < CPUS_PER_ACTOR:
        pytest.skip(f"fewer than {CPUS_PER_ACTOR} cores here: one host device")
    node = [cpus[i % len(cpus)] for i in range(4 * CPUS_PER_ACTOR)]  # what an actor on a bigger node sees
    monkeypatch.setattr(device, "pick_devices", lambda name: node)
    compute, actors = actor_plan({"CPU": float(len(node))}, "cpu", "float32", BucketSpec())
    assert actors == 4
    bundle = load_bundle(tiny_bundle)
    actor = _ScoreActor.__new__(_ScoreActor)  # its constructor asks Ray for the node id
    actor._load(
        str(tiny_bundle), bundle.bundle_sha256, Truncation(bundle.max_tokens, bundle.head_tokens), compute
    )
    assert actor.scorer.shards == CPUS_PER_ACTOR
