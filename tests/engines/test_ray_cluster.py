"""The Ray engine on a local multi-node cluster: the work runs on nodes other than the driver's."""

from __future__ import annotations

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from batchscore.interfaces.run_command import run_scoring
from batchscore.pipeline.options import RunOptions
from tests.helpers import read_scores

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    # the head (the driver's node) offers no CPU, so every task and actor must run on the two workers
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_several_shards_scored_on_worker_nodes_equal_the_local_engine(
    cluster, tmp_path, tiny_bundle, reviews_table, monkeypatch
):
    from batchscore.pipeline import run

    shards = tmp_path / "in"
    shards.mkdir()
    for i in range(4):
        pq.write_table(reviews_table.slice(i * 60, 60), shards / f"part-{i}.parquet")
    pacsv.write_csv(reviews_table.slice(240), shards / "part-4.csv")
    options = RunOptions(window_rows=40, id_column="review_id")
    local = run_scoring(
        [str(shards)], str(tmp_path / "local"), tiny_bundle, options, progress=False, log=print
    )

    engines = []
    opened = run.open_engine
    monkeypatch.setattr(run, "open_engine", lambda *args: engines.append(opened(*args)) or engines[-1])
    summary = run.run_files([str(shards)], str(tmp_path / "ray"), tiny_bundle, options, engine="ray")
    engine = engines[0]
    driver_node = ray.get_runtime_context().get_node_id()
    assert engine.actor_nodes and driver_node not in engine.actor_nodes
    assert summary.files_scored == 5 and summary.rows == local.rows == 300
    for i in range(5):
        name = f"part-{i}.parquet"
        assert read_scores(tmp_path / "ray" / name).equals(read_scores(tmp_path / "local" / name)), name
