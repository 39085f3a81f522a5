"""batchscore.spark on a local Spark session gives what `batchscore run` writes for the same rows."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchscore.base.errors import ModelError
from batchscore.interfaces.run_command import run_scoring
from batchscore.pipeline.options import RunOptions
from tests.helpers import without_run_columns

pyspark = pytest.importorskip("pyspark")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("batchscore-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_output_equals_batchscore_run_bit_for_bit(spark, tmp_path, tiny_bundle, reviews_table):
    from batchscore.spark import score_dataframe

    texts = reviews_table.column("text").to_pylist()
    texts[7] = None  # a bad row gets its error, as in a file
    table = reviews_table.set_column(1, "text", pa.array(texts, pa.string()))
    table = table.append_column("model", pa.array(["a customer column"] * table.num_rows))
    pq.write_table(table, tmp_path / "in.parquet")
    summary = run_scoring(
        [str(tmp_path / "in.parquet")],
        str(tmp_path / "out.parquet"),
        tiny_bundle,
        RunOptions(id_column="review_id", max_error_rate=1.0),
        progress=False,
        log=lambda m: None,
    )
    expected = pq.read_table(tmp_path / "out.parquet")

    frame = spark.read.parquet(str(tmp_path / "in.parquet")).repartition(3)  # over tasks, out of order
    scored = score_dataframe(frame, tiny_bundle).toArrow()
    got = scored.sort_by("review_id").replace_schema_metadata(None)
    assert got.column_names == expected.column_names  # the customer's `model` kept as input_model
    assert without_run_columns(got).equals(without_run_columns(expected.replace_schema_metadata(None)))
    assert got.column("model_sha256").unique().to_pylist() == [summary.to_dict()["model"]["model_sha256"]]
    assert len(got.column("run_id").unique()) == 1  # one run for the whole call
    assert got.column("error")[7].as_py() == "null text"


def test_spark_without_provenance_and_a_missing_column(spark, tiny_bundle, reviews_table):
    from batchscore.spark import score_dataframe

    frame = spark.createDataFrame(reviews_table.to_pandas())
    plain = score_dataframe(frame, tiny_bundle, provenance=False)
    assert plain.columns == [
        "review_id",
        "stars",
        "label",
        "prob_positive",
        "prob_negative",
        "n_tokens",
        "truncated",
        "error",
    ]
    with pytest.raises(KeyError, match="no text column 'body'"):
        score_dataframe(frame, tiny_bundle, text_column="body")


def test_a_worker_with_another_bundle_at_the_same_path_refuses(tiny_bundle):
    from batchscore.interfaces.spark import _worker_model

    with pytest.raises(ModelError, match="not the bundle the driver loaded"):
        _worker_model(str(tiny_bundle), "0" * 64, None, "float32", "cpu")


def test_column_names_with_dots_are_scored_and_kept(spark, tiny_bundle):
    """Spark reads `review.text` as a field of a struct unless told otherwise: the names are kept."""
    from batchscore.spark import score_dataframe

    frame = spark.createDataFrame([("good film", 1), ("bad film", 2)], ["review.text", "shop.id"])
    rows = score_dataframe(frame, tiny_bundle, text_column="review.text", provenance=False).collect()
    assert [row["shop.id"] for row in rows] == [1, 2]
    assert all(row["label"] in ("positive", "negative") for row in rows)


def test_a_job_root_of_parquet_and_csv_nights_reads_in_spark(spark, job_setup, tmp_path, reviews_table):
    from tests.run.test_jobs import nights_of_mixed_formats

    nights_of_mixed_formats(job_setup, tmp_path, reviews_table)
    frame = spark.read.parquet(str(tmp_path / "scored"))
    assert dict(frame.dtypes)["review_id"] == "bigint" and dict(frame.dtypes)["stars"] == "tinyint"
    assert frame.count() == 300 and frame.select("date").distinct().count() == 2
