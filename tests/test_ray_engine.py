"""The Ray Data engine on a local Ray instance gives the local engine's results."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from batchscore.pipeline import RunOptions
from batchscore.runner import run_scoring

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
    quiet = dict(progress=False, log=lambda m: None)
    local = run_scoring([str(shards)], str(tmp_path / "local"), tiny_bundle, options, **quiet)
    distributed = run_scoring(
        [str(shards)], str(tmp_path / "ray"), tiny_bundle, options, engine="ray", **quiet
    )
    assert local.rows == distributed.rows == 300 and distributed.error_rows == 1
    for name in ("a.parquet", "b.parquet"):
        a = pq.read_table(tmp_path / "local" / name)
        b = pq.read_table(tmp_path / "ray" / name)
        assert a.column_names == b.column_names
        for column in ("row", "review_id", "label", "n_tokens", "truncated", "error", "extra"):
            assert a.column(column).to_pylist() == b.column(column).to_pylist(), column
        np.testing.assert_allclose(
            a.column("prob_positive").to_numpy(zero_copy_only=False),
            b.column("prob_positive").to_numpy(zero_copy_only=False),
            atol=1e-6,
        )
