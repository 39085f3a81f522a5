"""No silent wrong output: reruns, model changes, odd inputs and concurrent runs."""

from __future__ import annotations

import json
import os
import shutil
import threading

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file

from batchscore.base.errors import InputError, OutputError, UsageError
from batchscore.interfaces.cli import main
from batchscore.io.paths import discover_inputs, resolve
from batchscore.io.writers import OutputLock, PartWriter
from batchscore.pipeline.options import RunOptions
from tests.helpers import crashed_run, read_scores, score_files, without_run_columns

OUTPUT_COLUMNS = ["label", "prob_positive", "prob_negative", "n_tokens", "truncated", "error"]


def run_cli(*args):
    return CliRunner().invoke(main, ["run", *map(str, args), "--no-progress"])


def recalibrated(bundle, tmp_path, **changes):
    """A copy of `bundle` with the same weights and other config values."""
    copy = tmp_path / "recal"
    shutil.copytree(bundle, copy)
    config = json.loads((copy / "config.json").read_text())
    config.update(changes)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


# 1 ---------------------------------------------------------------------------------------------
def test_resume_with_recalibrated_model_rescores_everything(
    tmp_path, tiny_bundle, reviews_table, monkeypatch
):
    source, out = tmp_path / "r.parquet", tmp_path / "o.parquet"
    pq.write_table(reviews_table, source)
    crashed_run(monkeypatch, [source], out, tiny_bundle, "manifest updated", 2, window_rows=100)
    recal = recalibrated(tiny_bundle, tmp_path, temperature=3.0)
    score_files([source], out, recal, window_rows=100, resume=True)
    expected = tmp_path / "expected.parquet"
    score_files([source], expected, recal, window_rows=100)
    got = pq.read_table(out)
    assert without_run_columns(got).equals(read_scores(expected))
    # and a finished output is not skipped when only the config changed
    original = tmp_path / "original.parquet"
    score_files([source], original, tiny_bundle)
    assert not read_scores(original).equals(read_scores(out))
    score_files([source], out, tiny_bundle, resume=True)
    assert read_scores(out).equals(read_scores(original))


@pytest.mark.parametrize("revision", ["the same", "another"])
def test_an_output_begun_by_another_scoring_arithmetic_is_scored_again(
    tmp_path, tiny_bundle, reviews_table, monkeypatch, revision
):
    """A change to the scoring arithmetic moves scores in their last bits: an output begun under
    another revision of it starts afresh on resume, one begun under the same picks up its parts."""
    import batchscore.pipeline.tasks as tasks

    source, out = tmp_path / "r.parquet", tmp_path / "o.parquet"
    pq.write_table(reviews_table, source)
    current = tasks.ARITHMETIC_REVISION
    monkeypatch.setattr(tasks, "ARITHMETIC_REVISION", current if revision == "the same" else current + "-old")
    crashed_run(monkeypatch, [source], out, tiny_bundle, "manifest updated", 2, window_rows=100)
    monkeypatch.setattr(tasks, "ARITHMETIC_REVISION", current)
    summary = score_files([source], out, tiny_bundle, window_rows=100, resume=True)
    rescored = summary.rows_scored_now == reviews_table.num_rows
    assert rescored == (revision == "another")
    fresh = tmp_path / "fresh.parquet"
    score_files([source], fresh, tiny_bundle, window_rows=100)
    assert read_scores(out).equals(read_scores(fresh))


def test_a_run_killed_after_its_small_first_window_resumes_to_a_straight_runs_output(
    tmp_path, tiny_bundle, reviews_table, monkeypatch
):
    """The first window is small so the device starts sooner; a kill right after it is committed
    leaves exactly its rows done, and the resume, in full windows from there, writes what a run that
    was never killed writes."""
    from batchscore.pipeline.engines.local import FIRST_GROUP_ROWS

    source, out = tmp_path / "r.parquet", tmp_path / "o.parquet"
    pq.write_table(pa.concat_tables([reviews_table] * 12), source)  # 3,600 rows, one default window
    crashed_run(monkeypatch, [source], out, tiny_bundle, "manifest updated", 1)
    committed = json.loads((tmp_path / ".o.parquet.parts" / "manifest.json").read_text())["rows_done"]
    assert committed == FIRST_GROUP_ROWS
    summary = score_files([source], out, tiny_bundle, resume=True)
    assert summary.rows_scored_now == 3600 - FIRST_GROUP_ROWS
    straight = tmp_path / "straight.parquet"
    score_files([source], straight, tiny_bundle)
    assert read_scores(out).equals(read_scores(straight))


# 2 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_input_rewritten_with_same_size_and_mtime_is_rescored(tmp_path, tiny_bundle, fmt):
    source, out = tmp_path / f"r.{fmt}", tmp_path / "o.parquet"

    def write(texts):
        table = pa.table({"text": texts})
        if fmt == "csv":
            pacsv.write_csv(table, source)
        else:
            pq.write_table(table, source, compression="none", write_statistics=False)

    write(["great film", "good plot", "the acting"])
    score_files([source], out, tiny_bundle)
    before = os.stat(source)
    write(["awful film", "bad! plot", "the acting"])  # same byte count, other words
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(source)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    score_files([source], out, tiny_bundle, resume=True)
    fresh = tmp_path / "fresh.parquet"
    score_files([source], fresh, tiny_bundle)
    assert read_scores(out).equals(read_scores(fresh))


# 3 ---------------------------------------------------------------------------------------------
def test_second_writer_of_an_output_fails_fast_naming_the_first(tmp_path, tiny_bundle, reviews_table):
    source, out = tmp_path / "r.parquet", tmp_path / "o.parquet"
    pq.write_table(reviews_table, source)
    holder = OutputLock(resolve(str(out)))
    holder.acquire("batchscore run r.parquet -o o.parquet")
    try:
        result = run_cli(source, "-o", out, "--model", tiny_bundle, "--max-tokens", "10")
        assert result.exit_code == 5, result.output
        assert "another batchscore run" in result.output and f"pid {os.getpid()}" in result.output
        assert not out.exists()
    finally:
        holder.release()
    assert not (tmp_path / ".o.parquet.lock").exists()
    assert run_cli(source, "-o", out, "--model", tiny_bundle).exit_code == 0


def test_stale_lock_of_a_killed_run_does_not_block_resume(tmp_path, tiny_bundle, reviews_table):
    source, out = tmp_path / "r.parquet", tmp_path / "o.parquet"
    pq.write_table(reviews_table, source)
    (tmp_path / ".o.parquet.lock").write_text("pid 999999 on elsewhere, command: killed -9\n")
    assert run_cli(source, "-o", out, "--model", tiny_bundle, "--resume").exit_code == 0
    assert pq.read_table(out).num_rows == reviews_table.num_rows


# 4 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [[], ["--resume"], ["--overwrite"]])
def test_output_may_never_be_an_input(tmp_path, tiny_bundle, reviews_table, flags):
    source = tmp_path / "same.parquet"
    pq.write_table(reviews_table, source)
    original = source.read_bytes()
    result = run_cli(source, "-o", source, "--model", tiny_bundle, *flags)
    assert result.exit_code == 2 and "is the input" in result.output
    (tmp_path / "link.parquet").symlink_to(source)
    assert run_cli(source, "-o", tmp_path / "link.parquet", "--model", tiny_bundle, *flags).exit_code == 2
    assert run_cli(tmp_path, "-o", tmp_path, "--model", tiny_bundle, *flags).exit_code == 2
    assert source.read_bytes() == original


@pytest.mark.parametrize("flags", [[], ["--resume"], ["--overwrite"]])
def test_output_named_like_an_existing_directory_is_refused_before_scoring(
    tmp_path, tiny_bundle, reviews_table, flags
):
    """A Spark-style `x.parquet/` dataset directory: never replaced, and said before any work."""
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    dataset = tmp_path / "x.parquet"
    dataset.mkdir()
    (dataset / "part-0.parquet").write_bytes(b"precious")
    result = run_cli(tmp_path / "r.parquet", "-o", dataset, "--model", tiny_bundle, *flags)
    assert result.exit_code == 5 and "is a directory" in result.output
    # refused in the preflight, nothing computed: the error line alone, no summary of a run
    assert len(result.output.strip().splitlines()) == 1
    assert [p.name for p in dataset.iterdir()] == ["part-0.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.parquet", "x.parquet"]


def test_output_inside_an_input_directory_is_refused_on_the_first_night(tmp_path, tiny_bundle, reviews_table):
    """`run landing/ -o landing/scored/` would work once, then list its own outputs as inputs."""
    landing = tmp_path / "landing"
    (landing / "day=1").mkdir(parents=True)
    pq.write_table(reviews_table, landing / "day=1" / "part-0.parquet")
    for output in (landing / "scored", landing / "day=1" / "out"):
        result = run_cli(landing, "-o", output, "--model", tiny_bundle)
        assert result.exit_code == 2, result.output
        assert "inside the input directory" in result.output and "_scored" in result.output
    assert sorted(p.name for p in landing.rglob("*") if p.is_file()) == ["part-0.parquet"]
    (tmp_path / "alias").symlink_to(landing)
    assert run_cli(landing, "-o", tmp_path / "alias" / "scored", "--model", tiny_bundle).exit_code == 2
    # Beside it (a name that merely starts the same) and below an _ folder are fine, night after night.
    for output in (tmp_path / "landing-scored", landing / "_scored"):
        for _night in range(2):
            result = run_cli(landing, "-o", output, "--model", tiny_bundle, "--resume")
            assert result.exit_code == 0, result.output
        assert pq.read_table(output / "day=1" / "part-0.parquet").num_rows == reviews_table.num_rows


# 5 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"temperature": 0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": -1.5}, "temperature"),
        ({"temperature": "1.0"}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -3}, "max_tokens"),
        ({"head_tokens": 60}, "head_tokens"),  # tiny bundle: max_tokens 48
        ({"labels": ["a", "b", "c"]}, "labels"),
        ({"labels": ["same", "same"]}, "labels"),
    ],
)
def test_bad_bundle_values_are_exit_4_naming_the_field(tmp_path, tiny_bundle, reviews_table, change, field):
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    bad = recalibrated(tiny_bundle, tmp_path, **change)
    result = run_cli(tmp_path / "r.parquet", "--model", bad)
    assert result.exit_code == 4, result.output
    assert field in result.output


def test_integer_weights_are_rejected(tmp_path, tiny_bundle, reviews_table):
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    bad = recalibrated(tiny_bundle, tmp_path)
    arrays = load_file(str(bad / "weights.safetensors"))
    arrays["head/kernel"] = arrays["head/kernel"].astype(np.int32)
    save_file(arrays, str(bad / "weights.safetensors"))
    result = run_cli(tmp_path / "r.parquet", "--model", bad)
    assert result.exit_code == 4 and "head/kernel" in result.output and "int32" in result.output


# 6 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "option", [["--max-tokens", "-1"], ["--max-tokens", "0"], ["--window-rows", "0"], ["--batch-tokens", "0"]]
)
def test_nonsense_sizes_are_usage_errors(tmp_path, tiny_bundle, reviews_table, option):
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    result = run_cli(tmp_path / "r.parquet", "--model", tiny_bundle, *option)
    assert result.exit_code == 2
    assert not (tmp_path / "r.scored.parquet").exists()


def test_id_column_that_is_the_dropped_text_column_is_refused(tmp_path, tiny_bundle, reviews_table):
    """The output would have neither the text nor `row`: nothing to join it back to the input by."""
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    result = run_cli(tmp_path / "r.parquet", "--model", tiny_bundle, "--id-column", "text")
    assert result.exit_code == 2 and "--keep-text" in result.output
    assert not (tmp_path / "r.scored.parquet").exists()
    kept = run_cli(tmp_path / "r.parquet", "--model", tiny_bundle, "--id-column", "text", "--keep-text")
    assert kept.exit_code == 0, kept.output
    out = pq.read_table(tmp_path / "r.scored.parquet")
    assert out.column("text").equals(reviews_table.column("text")) and "row" not in out.column_names


def test_library_callers_get_the_same_checks():
    for bad in ({"max_tokens": 0}, {"max_tokens": -1}, {"window_rows": 0}, {"max_error_rate": float("nan")}):
        with pytest.raises(UsageError):
            RunOptions(**bad)


@pytest.mark.parametrize("lost", ["a batch never returned", "a non-finite logit"])
def test_a_row_left_without_a_score_is_never_written(tiny_bundle, lost):
    """The last check before rows are written: every dispatched row has a finite score, or the window
    fails as an internal error (nothing of it reaches the output)."""
    from batchscore.inference.forward import Dispatched, Scorer, Truncation
    from batchscore.model.bundle import load_bundle

    bundle = load_bundle(tiny_bundle)
    scorer = Scorer(bundle.model, bundle.params, Truncation(16, 4))
    logits = np.zeros((2, bundle.model.num_classes), np.float32)
    if lost == "a batch never returned":
        dispatched = Dispatched(3, [(np.array([0, 2]), np.arange(2), logits)])
    else:
        logits[1, 0] = np.nan
        dispatched = Dispatched(2, [(np.array([0, 1]), np.arange(2), logits)])
    with pytest.raises(Exception, match="got no finite score"):
        scorer.collect(dispatched)
    assert (
        scorer.collect(Dispatched(2, [(np.array([1, 0]), np.arange(2), np.zeros_like(logits))])).shape
        == logits.shape
    )


# 7 ---------------------------------------------------------------------------------------------
def test_every_input_column_survives_a_name_clash(tmp_path, tiny_bundle):
    table = pa.table(
        {
            "text": ["good film", "bad film"],
            "row": [10, 11],
            "input_row": [20, 21],
            "error": ["e1", "e2"],
            "input_error": ["f1", "f2"],
            "label": ["x", "y"],
        }
    )
    pq.write_table(table, tmp_path / "r.parquet")
    summary = score_files([tmp_path / "r.parquet"], tmp_path / "o.parquet", tiny_bundle)
    out = pq.read_table(tmp_path / "o.parquet")
    assert len(set(out.column_names)) == len(out.column_names)
    values = {name: out.column(name).to_pylist() for name in out.column_names}
    for column in ("row", "input_row", "error", "input_error", "label"):
        assert table.column(column).to_pylist() in values.values(), column
    assert out.column("row").to_pylist() == [0, 1] and out.column("error").to_pylist() == [None, None]
    assert summary.renamed_columns == {
        "row": "input_input_row",
        "error": "input_input_error",
        "label": "input_label",
    }


# 8 ---------------------------------------------------------------------------------------------
def test_csv_values_are_kept_as_written(tmp_path, tiny_bundle):
    (tmp_path / "r.csv").write_text("id,text,score\n007,good film,1e5\n12345678901234567890,bad film,\n")
    score_files([tmp_path / "r.csv"], tmp_path / "o.parquet", tiny_bundle, id_column="id")
    out = pq.read_table(tmp_path / "o.parquet")
    assert out.column("id").to_pylist() == ["007", "12345678901234567890"]
    assert out.column("score").to_pylist() == ["1e5", ""]


def test_all_outputs_of_a_directory_share_one_schema(tmp_path, tiny_bundle):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a.csv").write_text("id,text\n1,good film\n2,bad film\n")
    (landing / "b.csv").write_text("id,text\nx-9,great plot\n")
    pq.write_table(pa.table({"n": pa.array([1], pa.int32()), "text": ["fine"]}), landing / "c.parquet")
    (landing / "sub").mkdir()
    pq.write_table(
        pa.table({"n": pa.array([2], pa.int64()), "text": ["awful"]}), landing / "sub" / "d.parquet"
    )
    score_files([landing / "a.csv", landing / "b.csv"], tmp_path / "csv_out", tiny_bundle)
    score_files([landing / "c.parquet", landing / "sub"], tmp_path / "pq_out", tiny_bundle)
    for directory in ("csv_out", "pq_out"):
        schemas = {pq.read_schema(p).remove_metadata() for p in (tmp_path / directory).glob("*.parquet")}
        assert len(schemas) == 1
        rows = duckdb.sql(
            f"select count(*) from read_parquet('{tmp_path / directory}/*.parquet')"
        ).fetchall()[0]
        assert rows[0] == (3 if directory == "csv_out" else 2)
        pd.read_parquet(tmp_path / directory)


# 9 ---------------------------------------------------------------------------------------------
def test_invalid_utf8_in_other_csv_columns_is_replaced_and_reported(tmp_path, tiny_bundle):
    (tmp_path / "r.csv").write_bytes(b"id,city,text\n1,K\xf6ln,good film\n2,Paris,bad film\n")
    summary = score_files([tmp_path / "r.csv"], tmp_path / "o.parquet", tiny_bundle, id_column="id")
    frame = pd.read_parquet(tmp_path / "o.parquet")
    assert frame["city"].tolist() == ["K\ufffdln", "Paris"]
    assert duckdb.sql(f"select count(*) from '{tmp_path / 'o.parquet'}'").fetchall()[0][0] == 2
    assert summary.replaced_utf8 == {"city": 1} and "U+FFFD" in summary.format()


def test_invalid_utf8_in_a_parquet_string_column_is_replaced(tmp_path, tiny_bundle):
    bad = pa.array([b"ok", b"b\xffd"], pa.binary()).view(pa.string())
    pq.write_table(pa.table({"text": ["good", "bad"], "note": bad}), tmp_path / "r.parquet")
    score_files([tmp_path / "r.parquet"], tmp_path / "o.parquet", tiny_bundle)
    assert pd.read_parquet(tmp_path / "o.parquet")["note"].tolist() == ["ok", "b\ufffdd"]


# 10 --------------------------------------------------------------------------------------------
def test_megabyte_csv_fields_are_read(tmp_path, tiny_bundle):
    huge = "good " * (2 << 20)  # 10 MB in one field, more than two read blocks
    (tmp_path / "r.csv").write_text(f'id,text\n1,bad film\n2,"{huge}"\n3,great\n')
    score_files([tmp_path / "r.csv"], tmp_path / "o.parquet", tiny_bundle, id_column="id")
    out = pq.read_table(tmp_path / "o.parquet")
    assert out.column("id").to_pylist() == ["1", "2", "3"]
    assert out.column("truncated").to_pylist() == [False, True, False]


SMALL_BLOCKS = {"csv_block_bytes": 1 << 12}  # so "mid-way" is 4 kB in, past the first block


def test_a_file_that_turns_bad_midway_is_skipped_like_any_bad_file(tmp_path, tiny_bundle):
    landing = tmp_path / "landing"
    landing.mkdir()
    good_rows = "".join(f"{i},good film number {i}\n" for i in range(2000))
    (landing / "bad.csv").write_text("id,text\n" + good_rows + "2001,ragged,row,here\n")
    (landing / "good.csv").write_text("id,text\n1,fine\n")
    summary = score_files(
        [landing], tmp_path / "out", tiny_bundle, skip_bad_files=True, window_rows=256, **SMALL_BLOCKS
    )
    assert len(summary.bad_files) == 1 and "bad.csv" in summary.bad_files[0]
    assert "in row 2,000 (" in summary.bad_files[0] and "'2001,ragged,row,here'" in summary.bad_files[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.parquet"]
    with pytest.raises(InputError, match=r"bad\.csv"):
        score_files(
            [landing / "bad.csv"], tmp_path / "o.parquet", tiny_bundle, window_rows=256, **SMALL_BLOCKS
        )


@pytest.mark.parametrize("first_rows", [1, 3000])  # in the first block (parsed on opening) or later
def test_a_ragged_csv_row_is_named_by_its_row_number(tmp_path, tiny_bundle, first_rows):
    rows = "".join(f'{i},"good film, number {i}\nsecond line"\n' for i in range(first_rows))
    (tmp_path / "r.csv").write_text("id,text\n" + rows + "x,fine,extra\n" + "y,fine\n")
    with pytest.raises(InputError) as raised:
        score_files([tmp_path / "r.csv"], tmp_path / "o.parquet", tiny_bundle, **SMALL_BLOCKS)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'r.csv'}: CSV parse error in row {first_rows:,} (")
    assert f"record {first_rows + 2} of the file" in message and "got 3: 'x,fine,extra'" in message
    assert not (tmp_path / "o.parquet").exists()


def test_type_inference_breaking_midway_is_a_bad_file(tmp_path, tiny_bundle):
    rows = "".join(f"{i},good film\n" for i in range(2000))
    (tmp_path / "r.csv").write_text("n,text\n" + rows + "not-a-number,bad film\n")
    with pytest.raises(InputError, match=r"r\.csv"):
        score_files(
            [tmp_path / "r.csv"], tmp_path / "o.parquet", tiny_bundle, csv_infer_types=True, **SMALL_BLOCKS
        )
    summary = score_files(
        [tmp_path / "r.csv"], tmp_path / "o.parquet", tiny_bundle, **SMALL_BLOCKS
    )  # default: strings
    assert summary.rows == 2001


# 11 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "layout",
    [
        lambda texts: texts.dictionary_encode(),  # Spark/pandas categoricals
        lambda texts: texts.cast(pa.string_view()),  # DuckDB/Polars views
        lambda texts: texts.cast(pa.large_string()),
        lambda texts: texts.cast(pa.binary_view()),
    ],
    ids=["dictionary", "string_view", "large_string", "binary_view"],
)
def test_every_arrow_text_layout_is_scored_like_plain_strings(tmp_path, tiny_bundle, reviews_table, layout):
    texts = reviews_table.column("text")
    plain = pa.table({"text": texts})
    pq.write_table(pa.table({"text": layout(texts)}), tmp_path / "other.parquet")
    pq.write_table(plain, tmp_path / "plain.parquet")
    score_files([tmp_path / "other.parquet"], tmp_path / "a.parquet", tiny_bundle)
    score_files([tmp_path / "plain.parquet"], tmp_path / "b.parquet", tiny_bundle)
    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert a.column("error").null_count == a.num_rows
    assert a.select(OUTPUT_COLUMNS).equals(b.select(OUTPUT_COLUMNS))


# 12 --------------------------------------------------------------------------------------------
def test_symlink_loop_in_a_directory_ends(tmp_path, reviews_table):
    landing = tmp_path / "landing"
    (landing / "sub").mkdir(parents=True)
    pq.write_table(reviews_table, landing / "sub" / "a.parquet")
    (landing / "sub" / "loop").symlink_to(landing)
    found = []
    worker = threading.Thread(target=lambda: found.extend(discover_inputs([str(landing)])), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "input discovery did not end"
    assert [f.location.name for f in found] == ["a.parquet"]


# 13 --------------------------------------------------------------------------------------------
def test_unreadable_manifest_stops_the_run_and_keeps_the_parts(
    tmp_path, tiny_bundle, reviews_table, monkeypatch
):
    source, out = tmp_path / "r.parquet", tmp_path / "o.parquet"
    pq.write_table(reviews_table, source)
    crashed_run(monkeypatch, [source], out, tiny_bundle, "manifest updated", 2, window_rows=100)
    work = tmp_path / ".o.parquet.parts"
    manifest = work / "manifest.json"
    saved = manifest.read_bytes()
    manifest.unlink()
    manifest.mkdir()  # reading it now fails with an error that is not "file not found"
    with pytest.raises(OutputError, match="manifest"):
        score_files([source], out, tiny_bundle, window_rows=100, resume=True)
    assert sorted(p.name for p in work.glob("part-*")) == [
        "part-000000.parquet-part",
        "part-000001.parquet-part",
    ]
    manifest.rmdir()
    manifest.write_bytes(saved)
    score_files([source], out, tiny_bundle, window_rows=100, resume=True)
    assert pq.read_table(out).num_rows == reviews_table.num_rows


def test_missing_manifest_means_nothing_committed(tmp_path):
    writer = PartWriter(resolve(str(tmp_path / "o.parquet")), {"x": "1"})
    assert writer.resume().rows_done == 0


# 17 --------------------------------------------------------------------------------------------
def test_zero_row_inputs_give_zero_row_outputs_with_the_full_schema(tmp_path, tiny_bundle, reviews_table):
    landing = tmp_path / "landing"
    landing.mkdir()
    pq.write_table(reviews_table.slice(0, 10), landing / "full.parquet")
    pq.write_table(reviews_table.schema.empty_table(), landing / "empty.parquet")
    summary = score_files([landing], tmp_path / "out", tiny_bundle)
    full, empty = (pq.read_table(tmp_path / "out" / n) for n in ("full.parquet", "empty.parquet"))
    assert empty.num_rows == 0 and empty.schema.remove_metadata() == full.schema.remove_metadata()
    assert summary.empty_files == 1 and summary.files_scored == 2 and summary.rows == 10

    (tmp_path / "h.csv").write_text("id,text\n")
    score_files([tmp_path / "h.csv"], tmp_path / "h.parquet", tiny_bundle)
    header_only = pq.read_table(tmp_path / "h.parquet")
    assert header_only.num_rows == 0 and {"id", "label", "prob_positive", "error"} <= set(
        header_only.column_names
    )

    (tmp_path / "zero.csv").write_bytes(b"")
    assert run_cli(tmp_path / "zero.csv", "--model", tiny_bundle).exit_code == 3


# one stream for many files -------------------------------------------------------------------
def small_shards(tmp_path, reviews_table, count: int = 12):
    landing = tmp_path / "landing"
    landing.mkdir()
    for i in range(count):
        pq.write_table(reviews_table.slice(i * 25, 25), landing / f"part-{i:02d}.parquet")
    return landing


def test_rows_of_many_files_share_batches_yet_each_output_is_its_own(tmp_path, tiny_bundle, reviews_table):
    landing = small_shards(tmp_path, reviews_table)
    score_files([landing], tmp_path / "together", tiny_bundle, window_rows=1000)
    for shard in sorted(landing.iterdir()):
        score_files([shard], tmp_path / "alone" / shard.name, tiny_bundle)
        together = read_scores(tmp_path / "together" / shard.name)
        assert together.equals(read_scores(tmp_path / "alone" / shard.name))  # bit for bit, in order


@pytest.mark.parametrize(
    ("step", "nth"), [("manifest updated", 5), ("output renamed", 3), ("parts removed", 7)]
)
def test_crash_in_a_multi_file_stream_resumes_each_file(
    tmp_path, tiny_bundle, reviews_table, monkeypatch, step, nth
):
    landing = small_shards(tmp_path, reviews_table)
    score_files([landing], tmp_path / "reference", tiny_bundle, window_rows=60)
    crashed_run(monkeypatch, [landing], tmp_path / "out", tiny_bundle, step, nth, window_rows=60)
    assert not list((tmp_path / "out").glob(".*.lock"))  # every lock released on the way out
    summary = score_files([landing], tmp_path / "out", tiny_bundle, window_rows=60, resume=True)
    assert summary.rows == reviews_table.num_rows and summary.files_skipped_done >= 1
    for shard in sorted(landing.iterdir()):
        expected = read_scores(tmp_path / "reference" / shard.name)
        assert read_scores(tmp_path / "out" / shard.name).equals(expected)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in landing.iterdir())
