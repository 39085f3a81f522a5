"""`batchscore run` end to end: formats, layouts, order, schema, atomicity."""

from __future__ import annotations

import gzip
import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchscore.base.errors import OutputError, UsageError
from batchscore.inference.outputs import PROVENANCE_COLUMNS
from batchscore.interfaces.cli import main
from batchscore.pipeline.options import RunOptions
from tests.helpers import random_review, read_scores, score_files

OUTPUT = ["label", "prob_positive", "prob_negative", "n_tokens", "truncated", "error"]


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def test_single_parquet_writes_scored_file_beside_input(tmp_path, tiny_bundle, reviews_table):
    source = tmp_path / "reviews.parquet"
    pq.write_table(reviews_table, source, row_group_size=70)
    result = invoke("run", source, "--model", tiny_bundle, "--no-progress")
    assert result.exit_code == 0, result.output
    out = pq.read_table(tmp_path / "reviews.scored.parquet")
    assert out.column_names == ["row", "review_id", "stars", *OUTPUT, *PROVENANCE_COLUMNS]
    assert out.column("row").to_pylist() == list(range(300))
    assert out.column("review_id").to_pylist() == reviews_table.column("review_id").to_pylist()
    assert out.schema.field("prob_positive").type == pa.float32()
    assert out.schema.field("n_tokens").type == pa.int32()
    pos, neg = out.column("prob_positive").to_numpy(), out.column("prob_negative").to_numpy()
    np.testing.assert_allclose(pos + neg, 1.0, atol=1e-6)
    assert set(out.column("label").to_pylist()) <= {"positive", "negative"}
    assert ((pos >= 0.5) == (np.array(out.column("label").to_pylist()) == "positive")).all()
    assert "rows 300" in result.output  # summary on stderr (mixed into output by CliRunner)


def test_order_and_ids_survive_small_windows_and_buckets(tmp_path, tiny_bundle, reviews_table):
    source = tmp_path / "r.parquet"
    pq.write_table(reviews_table, source)
    score_files([source], tmp_path / "a.parquet", tiny_bundle, id_column="review_id")
    score_files([source], tmp_path / "b.parquet", tiny_bundle, id_column="review_id", window_rows=37)
    a, b = read_scores(tmp_path / "a.parquet"), read_scores(tmp_path / "b.parquet")
    assert "row" not in a.column_names
    assert a.column("review_id").to_pylist() == reviews_table.column("review_id").to_pylist()
    assert a.equals(b)  # identical data whatever the window size


def test_token_counts_and_truncation_flag(tmp_path, tiny_bundle):
    texts = ["good film", "bad " * 30 + "awful", "great " * 100]
    source = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": texts}), source)
    score_files([source], tmp_path / "o.parquet", tiny_bundle)
    out = pq.read_table(tmp_path / "o.parquet")
    assert out.column("n_tokens").to_pylist() == [2, 31, 100]
    assert out.column("truncated").to_pylist() == [False, False, True]  # the tiny model keeps 48


def test_csv_and_gzipped_csv_give_the_same_scores_as_parquet(tmp_path, tiny_bundle, reviews_table):
    pq.write_table(reviews_table, tmp_path / "p.parquet")
    pacsv.write_csv(reviews_table, tmp_path / "c.csv")
    with gzip.open(tmp_path / "g.csv.gz", "wb") as handle:
        handle.write((tmp_path / "c.csv").read_bytes())
    results = {}
    for name in ("p.parquet", "c.csv", "g.csv.gz"):
        score_files([tmp_path / name], tmp_path / f"out-{name}.parquet", tiny_bundle)
        results[name] = pq.read_table(tmp_path / f"out-{name}.parquet")
    for name in ("c.csv", "g.csv.gz"):
        assert results[name].column("prob_positive").equals(results["p.parquet"].column("prob_positive"))
        ids = reviews_table.column("review_id").to_pylist()
        assert results[name].column("review_id").to_pylist() == [str(i) for i in ids]  # as written


def test_directory_of_mixed_shards_maps_one_to_one(tmp_path, tiny_bundle, reviews_table):
    shards = tmp_path / "in"
    shards.mkdir()
    pq.write_table(reviews_table.slice(0, 100), shards / "a.parquet")
    pacsv.write_csv(reviews_table.slice(100, 100), shards / "b.csv")
    (shards / "_SUCCESS").write_text("")
    (shards / ".hidden.parquet").write_bytes(b"junk")
    result = invoke("run", shards, "-o", tmp_path / "out", "--model", tiny_bundle, "--no-progress")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.parquet", "b.parquet"]
    outputs = [pq.read_table(tmp_path / "out" / name) for name in ("a.parquet", "b.parquet")]
    # the CSV's values take the Parquet shard's types: a column's type never depends on the format
    assert outputs[1].column("review_id").to_pylist() == list(range(5100, 5200))
    assert outputs[0].column("review_id").to_pylist() == list(range(5000, 5100))
    assert outputs[1].schema.field("stars").type == pa.int8()
    assert outputs[0].schema.remove_metadata() == outputs[1].schema.remove_metadata()  # one table


def test_a_csv_value_that_does_not_take_the_runs_type_is_named(tmp_path, tiny_bundle, reviews_table):
    shards = tmp_path / "in"
    shards.mkdir()
    pq.write_table(reviews_table.slice(0, 100), shards / "a.parquet")
    (shards / "b.csv").write_text("review_id,text,stars\n7,good film,5\n,empty id,4\nx-8,bad film,1\n")
    result = invoke("run", shards, "-o", tmp_path / "out", "--model", tiny_bundle, "--no-progress")
    assert result.exit_code == 3, result.output
    assert "b.csv: row 2, column 'review_id' (value 'x-8') does not fit the run's type int64" in result.output
    (shards / "b.csv").write_text("review_id,text,stars\n7,good film,5\n,empty id,4\n")
    result = invoke(
        "run", shards, "-o", tmp_path / "out", "--model", tiny_bundle, "--no-progress", "--overwrite"
    )
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "out" / "b.parquet").column("review_id").to_pylist() == [7, None]


def test_glob_input(tmp_path, tiny_bundle, reviews_table):
    for i in range(3):
        pq.write_table(reviews_table.slice(i * 10, 10), tmp_path / f"shard-{i}.parquet")
    score_files([tmp_path / "shard-*.parquet"], tmp_path / "out", tiny_bundle)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"shard-{i}.parquet" for i in range(3)]


def test_file_uri_input_and_output(tmp_path, tiny_bundle, reviews_table):
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    score_files([f"file://{tmp_path}/r.parquet"], f"file://{tmp_path}/u.parquet", tiny_bundle)
    assert pq.read_table(tmp_path / "u.parquet").num_rows == 300


def test_several_inputs_need_an_output_directory(tmp_path, tiny_bundle, reviews_table):
    for name in ("a", "b"):
        pq.write_table(reviews_table, tmp_path / f"{name}.parquet")
    with pytest.raises(UsageError, match="pass -o DIR"):  # a command-line mistake: exit 2
        score_files([tmp_path / "a.parquet", tmp_path / "b.parquet"], None, tiny_bundle)
    with pytest.raises(UsageError, match=r"need an output directory, not a \.parquet file"):
        score_files([tmp_path / "a.parquet", tmp_path / "b.parquet"], tmp_path / "x.parquet", tiny_bundle)


def test_existing_output_is_never_overwritten_silently(tmp_path, tiny_bundle, reviews_table):
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    score_files([tmp_path / "r.parquet"], tmp_path / "o.parquet", tiny_bundle)
    before = (tmp_path / "o.parquet").read_bytes()
    result = invoke("run", tmp_path / "r.parquet", "-o", tmp_path / "o.parquet", "--model", tiny_bundle)
    assert result.exit_code == 5
    assert "already exists; pass --overwrite" in result.output
    assert (tmp_path / "o.parquet").read_bytes() == before
    assert (
        invoke(
            "run", tmp_path / "r.parquet", "-o", tmp_path / "o.parquet", "--model", tiny_bundle, "--overwrite"
        ).exit_code
        == 0
    )


def test_failed_write_leaves_no_file_under_the_final_name(tmp_path, tiny_bundle, reviews_table, monkeypatch):
    pq.write_table(reviews_table, tmp_path / "r.parquet")

    def disk_full(self, table, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", disk_full)
    with pytest.raises(OutputError, match="No space left on device"):
        score_files([tmp_path / "r.parquet"], tmp_path / "o.parquet", tiny_bundle)
    assert not (tmp_path / "o.parquet").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_metadata_names_model_and_version(tmp_path, tiny_bundle, reviews_table):
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    score_files([tmp_path / "r.parquet"], tmp_path / "o.parquet", tiny_bundle)
    meta = pq.read_schema(tmp_path / "o.parquet").metadata
    assert meta[b"batchscore.model_name"] == b"tiny-test"
    assert len(meta[b"batchscore.weights_sha256"]) == 64
    assert b"batchscore.scored_at" in meta and b"batchscore.version" in meta


def test_keep_text_and_clashing_input_columns(tmp_path, tiny_bundle):
    source = tmp_path / "r.parquet"
    pq.write_table(pa.table({"text": ["good film", "bad film"], "label": [1, 0]}), source)
    score_files([source], tmp_path / "o.parquet", tiny_bundle, keep_text=True)
    out = pq.read_table(tmp_path / "o.parquet")
    assert out.column("text").to_pylist() == ["good film", "bad film"]
    assert out.column("input_label").to_pylist() == [1, 0]


def test_summary_json(tmp_path, tiny_bundle, reviews_table):
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    result = invoke(
        "run", tmp_path / "r.parquet", "--model", tiny_bundle, "--summary-json", tmp_path / "s.json"
    )
    assert result.exit_code == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["rows"] == 300 and summary["error_rows"] == 0
    assert sum(summary["labels"].values()) == 300


@pytest.mark.parametrize("command", [[], ["run"], ["predict"], ["evaluate"], ["train"], ["info"]])
def test_help_texts(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output and "--help" in result.output
    if command == ["run"]:
        for option in (
            "--text-column",
            "--id-column",
            "--model",
            "--max-tokens",
            "--device",
            "--keep-text",
            "--overwrite",
            "--resume",
            "--batch-tokens",
            "--progress",
            "Exit codes",
        ):
            assert option in result.output


def test_predict_prints_label_and_probabilities(tiny_bundle):
    result = CliRunner().invoke(main, ["predict", "good film", "", "--model", str(tiny_bundle), "--json"])
    assert result.exit_code == 0
    first, second = (json.loads(line) for line in result.output.strip().splitlines())
    assert first["label"] in ("positive", "negative")
    assert abs(first["prob_positive"] + first["prob_negative"] - 1) < 1e-9
    assert second["error"] == "empty text"
    assert (first["n_tokens"], first["truncated"], second["n_tokens"], second["truncated"]) == (
        2,
        False,
        0,
        False,
    )
    # the text form: a header, each label once with its probability; why a row has no score
    text = CliRunner().invoke(main, ["predict", "good film", "", "--model", str(tiny_bundle)])
    header, scored, failed = text.output.strip().splitlines()
    assert header.split() == ["label", "p(positive)", "tokens", "text"]
    assert scored.split()[:3] == [first["label"], f"{first['prob_positive']:.3f}", "2"]
    assert scored.count("positive") + scored.count("negative") == 1
    assert failed.split()[:4] == ["error", "empty", "text", "0"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=90), min_size=1, max_size=150),
    window=st.integers(min_value=1, max_value=64),
)
def test_rows_are_never_dropped_duplicated_or_reordered(tmp_path_factory, tiny_bundle, lengths, window):
    tmp = tmp_path_factory.mktemp("prop")
    rng = random.Random(len(lengths))
    texts = [random_review(rng, n) if n else "" for n in lengths]
    pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), tmp / "in.parquet")
    score_files(
        [tmp / "in.parquet"], tmp / "out.parquet", tiny_bundle, window_rows=window, max_error_rate=1.0
    )
    out = pq.read_table(tmp / "out.parquet")
    assert out.column("id").to_pylist() == list(range(len(texts)))
    assert out.column("row").to_pylist() == list(range(len(texts)))
    assert [e == "empty text" for e in out.column("error").to_pylist()] == [n == 0 for n in lengths]


def test_same_scores_whatever_the_sharding(tmp_path, tiny_bundle, reviews_table):
    pq.write_table(reviews_table, tmp_path / "whole.parquet")
    shards = tmp_path / "shards"
    shards.mkdir()
    for i, start in enumerate((0, 17, 150)):
        end = (17, 150, 300)[i]
        pq.write_table(reviews_table.slice(start, end - start), shards / f"s{i}.parquet")
    score_files(
        [tmp_path / "whole.parquet"], tmp_path / "whole.out.parquet", tiny_bundle, id_column="review_id"
    )
    score_files([shards], tmp_path / "out", tiny_bundle, id_column="review_id", window_rows=50)
    whole = read_scores(tmp_path / "whole.out.parquet")
    parts = pa.concat_tables(read_scores(tmp_path / "out" / f"s{i}.parquet") for i in range(3))
    assert parts.equals(whole)


def test_any_pyarrow_filesystem(tiny_bundle, reviews_table):
    from pyarrow import fs as pafs

    from batchscore.interfaces.run_command import run_scoring

    mock = pafs._MockFileSystem()
    mock.create_dir("landing")
    with mock.open_output_stream("landing/a.parquet") as handle:
        pq.write_table(reviews_table, handle)
    run_scoring(
        ["landing/a.parquet"],
        "scored/a.parquet",
        tiny_bundle,
        RunOptions(),
        progress=False,
        log=lambda m: None,
        filesystem=mock,
    )
    with mock.open_input_file("scored/a.parquet") as handle:
        out = pq.read_table(handle)
    assert out.num_rows == 300 and out.column("review_id").equals(reviews_table.column("review_id"))
    assert [i.path for i in mock.get_file_info(pafs.FileSelector("scored"))] == ["scored/a.parquet"]
