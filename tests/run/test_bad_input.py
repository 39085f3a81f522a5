"""Bad rows keep the job going with an error per row; bad files fail clearly, nothing lost."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from batchscore.base.errors import ErrorRateExceeded
from batchscore.interfaces.cli import main
from tests.helpers import score_files


def run_cli(*args):
    return CliRunner().invoke(main, ["run", *map(str, args), "--no-progress"])


def test_each_bad_row_gets_an_output_row_with_a_reason(tmp_path, tiny_bundle):
    texts = ["good film", None, "", "   \t ", "\x00\x01", "zzzz qqqq", "great " * 200_000, "bad movie"]
    pq.write_table(pa.table({"text": pa.array(texts, pa.string())}), tmp_path / "r.parquet")
    summary = score_files([tmp_path / "r.parquet"], tmp_path / "o.parquet", tiny_bundle, max_error_rate=1.0)
    out = pq.read_table(tmp_path / "o.parquet").to_pylist()
    assert len(out) == len(texts)
    errors = [r["error"] for r in out]
    assert errors == [None, "null text", "empty text", "empty text", "empty text", None, None, None]
    for row in out:
        assert (row["label"] is None) == (row["error"] is not None)
        assert (row["prob_positive"] is None) == (row["error"] is not None)
    assert out[5]["n_tokens"] == 2 and out[5]["label"] is not None  # unknown words only: still scored
    assert out[6]["truncated"] is True and out[6]["n_tokens"] == 200_000  # megabytes of text: truncated
    assert summary.error_rows == 4 and summary.errors["empty text"] == 3


def test_invalid_utf8_in_csv_is_a_row_error(tmp_path, tiny_bundle):
    (tmp_path / "r.csv").write_bytes(b"id,text\n1,good film\n2,bad \xff\xfe film\n3,awful\n")
    score_files([tmp_path / "r.csv"], tmp_path / "o.parquet", tiny_bundle, max_error_rate=1.0, id_column="id")
    out = pq.read_table(tmp_path / "o.parquet")
    assert out.column("id").to_pylist() == ["1", "2", "3"]
    assert out.column("error").to_pylist() == [None, "invalid UTF-8", None]


def test_non_string_text_column(tmp_path, tiny_bundle):
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "r.parquet")
    with pytest.raises(ErrorRateExceeded):
        score_files([tmp_path / "r.parquet"], tmp_path / "o.parquet", tiny_bundle)
    assert (
        pq.read_table(tmp_path / "o.parquet").column("error").to_pylist()
        == ["text is int64, not a string"] * 2
    )


def test_error_rate_threshold_exit_code(tmp_path, tiny_bundle):
    pq.write_table(
        pa.table({"text": pa.array(["good", None, None, "bad"], pa.string())}), tmp_path / "r.parquet"
    )
    result = run_cli(tmp_path / "r.parquet", "--model", tiny_bundle, "--max-error-rate", "0.2")
    assert result.exit_code == 6
    assert "2 of 4 rows (50.00%) could not be scored" in result.output
    assert "Traceback" not in result.output


def test_missing_text_column_lists_the_columns(tmp_path, tiny_bundle):
    pq.write_table(pa.table({"body": ["x"], "id": [1]}), tmp_path / "r.parquet")
    result = run_cli(tmp_path / "r.parquet", "--model", tiny_bundle)
    assert result.exit_code == 3
    assert "r.parquet: no text column 'text'; columns are ['body', 'id']" in result.output


def test_semicolon_csv_gets_a_delimiter_hint(tmp_path, tiny_bundle):
    (tmp_path / "r.csv").write_text("id;text\n1;good film\n")
    result = run_cli(tmp_path / "r.csv", "--model", tiny_bundle)
    assert result.exit_code == 3 and "--csv-delimiter ';'" in result.output
    ok = run_cli(tmp_path / "r.csv", "--model", tiny_bundle, "--csv-delimiter", ";")
    assert ok.exit_code == 0


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.parquet", b"", "empty file"),
        ("corrupt.parquet", b"PAR1 this is not parquet at all", "not a readable Parquet file"),
        ("notes.txt", b"hello", "unsupported file type"),
    ],
)
def test_bad_files_fail_with_one_clear_line(tmp_path, tiny_bundle, name, content, message):
    (tmp_path / name).write_bytes(content)
    result = run_cli(tmp_path / name, "--model", tiny_bundle)
    assert result.exit_code == 3, result.output
    assert name in result.output and message in result.output
    assert "Traceback" not in result.output


def test_truncated_parquet(tmp_path, tiny_bundle, reviews_table):
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    data = (tmp_path / "r.parquet").read_bytes()
    (tmp_path / "r.parquet").write_bytes(data[: len(data) // 2])
    result = run_cli(tmp_path / "r.parquet", "--model", tiny_bundle)
    assert result.exit_code == 3 and "corrupt or truncated" in result.output


def test_zero_row_parquet_is_a_zero_row_output(tmp_path, tiny_bundle):
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "r.parquet")
    result = run_cli(tmp_path / "r.parquet", "--model", tiny_bundle)
    assert result.exit_code == 0 and "1 input file(s) had no rows" in result.output
    assert pq.read_table(tmp_path / "r.scored.parquet").num_rows == 0


def test_shards_with_different_schemas(tmp_path, tiny_bundle):
    d = tmp_path / "in"
    d.mkdir()
    pq.write_table(pa.table({"text": ["good"], "id": [1]}), d / "a.parquet")
    pq.write_table(pa.table({"text": ["bad"], "other": [1]}), d / "b.parquet")
    result = run_cli(d, "-o", tmp_path / "out", "--model", tiny_bundle)
    assert result.exit_code == 3 and "shards of one run must share a schema" in result.output
    assert not (tmp_path / "out").exists()  # checked before anything was scored


def test_skip_bad_files_scores_the_good_ones(tmp_path, tiny_bundle):
    d = tmp_path / "in"
    d.mkdir()
    pq.write_table(pa.table({"text": ["good film", "bad film"]}), d / "a.parquet")
    (d / "b.parquet").write_bytes(b"garbage")
    pacsv.write_csv(pa.table({"text": ["great"]}), d / "c.csv")
    result = run_cli(d, "-o", tmp_path / "out", "--model", tiny_bundle, "--skip-bad-files")
    assert result.exit_code == 7
    assert "bad file:" in result.output and "b.parquet" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.parquet", "c.parquet"]


def test_missing_input(tmp_path, tiny_bundle):
    result = run_cli(tmp_path / "nope.parquet", "--model", tiny_bundle)
    assert result.exit_code == 8 and "no such file or directory" in result.output  # nothing to score


def test_unwritable_output_directory(tmp_path, tiny_bundle, reviews_table):
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: directory permissions are not enforced")
        result = run_cli(tmp_path / "r.parquet", "-o", locked / "o.parquet", "--model", tiny_bundle)
        assert result.exit_code == 5 and "cannot" in result.output
    finally:
        os.chmod(locked, 0o700)


def test_output_under_a_file_is_an_output_error(tmp_path, tiny_bundle, reviews_table):
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    (tmp_path / "blocker").write_text("a file, not a directory")
    result = run_cli(tmp_path / "r.parquet", "-o", tmp_path / "blocker" / "o.parquet", "--model", tiny_bundle)
    assert result.exit_code == 5 and "cannot" in result.output


def test_broken_model_bundle_exit_code(tmp_path, reviews_table):
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    (tmp_path / "model").mkdir()
    result = run_cli(tmp_path / "r.parquet", "--model", tmp_path / "model")
    assert result.exit_code == 4 and "missing config.json" in result.output
