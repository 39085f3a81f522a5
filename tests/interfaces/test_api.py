"""The Python API: the same values as `batchscore run`, from any thread, any pandas dtype."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import batchscore
from batchscore.inference.outputs import PROVENANCE_COLUMNS
from tests.helpers import ROOT, score_files

README = ROOT / "README.md"


@pytest.fixture(scope="module")
def model(tiny_bundle):
    return batchscore.load_model(tiny_bundle)


def with_bad_rows(table: pa.Table) -> pa.Table:
    texts = table.column("text").to_pylist()
    texts[3], texts[7] = None, "   "
    return table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts, pa.string()))


def test_score_table_equals_run_output_column_for_column(tmp_path, tiny_bundle, reviews_table, model):
    table = with_bad_rows(reviews_table).append_column("label", pa.array(["x"] * reviews_table.num_rows))
    pq.write_table(table, tmp_path / "r.parquet")
    score_files(
        [tmp_path / "r.parquet"], tmp_path / "o.parquet", tiny_bundle, id_column="review_id", max_error_rate=1
    )
    written = pq.read_table(tmp_path / "o.parquet").drop_columns(list(PROVENANCE_COLUMNS))
    scored = model.score_table(table)
    assert scored.column_names == written.column_names  # input_label, stars, ..., label, error
    assert scored.equals(written.replace_schema_metadata(None))


def test_score_frame_keeps_the_frame_and_matches_run(tmp_path, tiny_bundle, reviews_table, model):
    frame = reviews_table.to_pandas()
    frame.index = frame.index + 1000
    frame["stars"] = frame["stars"].astype("Int8")  # pandas nullable dtypes
    frame.loc[1001, "stars"] = pd.NA
    frame["text"] = frame["text"].astype("string")
    frame.loc[1002, "text"] = pd.NA
    out = model.score_frame(frame)
    assert list(out.index) == list(frame.index) and out["stars"].dtype == "Int8"
    assert out.loc[1002, "error"] == "null text" and out.loc[1002, "prob_positive"] is pd.NA
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "r.parquet")
    score_files([tmp_path / "r.parquet"], tmp_path / "o.parquet", tiny_bundle, id_column="review_id")
    written = pq.read_table(tmp_path / "o.parquet").to_pandas()
    np.testing.assert_array_equal(
        out["prob_positive"].to_numpy(np.float32, na_value=np.nan), written["prob_positive"]
    )
    assert out["label"].fillna("-").tolist() == written["label"].fillna("-").tolist()
    assert out["error"].fillna("-").tolist() == written["error"].fillna("-").tolist()


def test_categorical_text_column(model, reviews_table):
    frame = reviews_table.to_pandas()
    plain = model.score_frame(frame)
    frame["text"] = frame["text"].astype("category")
    categorical = model.score_frame(frame)
    pd.testing.assert_frame_equal(plain, categorical)


def test_predict_one_row_per_text_and_bad_rows_are_rows(model):
    out = model.predict(["good film", None, "", "bad acting", 7 * "great "])
    assert list(out.columns) == ["label", "prob_positive", "prob_negative", "n_tokens", "truncated", "error"]
    assert out["error"].tolist()[1:3] == ["null text", "empty text"]
    assert out["error"].isna().tolist() == [True, False, False, True, True]
    assert out["label"].isna().tolist() == [False, True, True, False, False]
    assert out["n_tokens"].tolist()[3:] == [2, 7]


def test_values_that_are_not_text_are_row_errors_not_exceptions(model):
    """An object column from a messy frame (a number or a list among the texts) fails only its rows."""
    values = ["good film", 42, None, float("nan"), ["bad"], "bad acting"]
    expected_errors = [
        None,
        "text is int, not a string",
        "null text",
        "null text",
        "text is list, not a string",
        None,
    ]
    plain = model.predict(["good film", "bad acting"])
    for out in (model.predict(values), model.score_frame(pd.DataFrame({"text": values}))):
        assert out["error"].astype(object).where(out["error"].notna(), None).tolist() == expected_errors
        assert out["label"].isna().tolist() == [False, True, True, True, True, False]
        scored = out.iloc[[0, 5]].reset_index(drop=True)
        pd.testing.assert_frame_equal(scored, plain)


def test_threads_share_one_model(model, reviews_table):
    texts = reviews_table.column("text").to_pylist()
    chunks = [texts[i : i + 37] for i in range(0, len(texts), 37)]
    serial = [model.predict(chunk) for chunk in chunks]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(model.predict, chunks))
    for a, b in zip(serial, parallel, strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_info_describes_the_model(model):
    info = model.info
    assert info["name"] == "tiny-test" and info["labels"] == ["negative", "positive"]
    assert info["max_tokens"] == 48 and len(info["bundle_sha256"]) == 64
    assert "matmuls" in info["compute"]


def test_missing_text_column_is_a_clear_error(model):
    with pytest.raises(KeyError, match="no text column 'body'"):
        model.score_frame(pd.DataFrame({"text": ["x"]}), text_column="body")
