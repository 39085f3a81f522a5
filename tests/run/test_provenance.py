"""Which model scored a row, in which run: plain columns, consistent across a resume, and in every
JSON document the tool writes, each of which matches its published JSON Schema."""

from __future__ import annotations

import json
import re
import shutil
from datetime import date
from importlib import resources

import duckdb
import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import batchscore.io.writers as writers
from batchscore.interfaces.cli import main
from batchscore.interfaces.run_command import run_scoring
from batchscore.model.bundle import load_bundle
from batchscore.pipeline.options import RunOptions
from tests.helpers import Crash, crash_after

QUIET = {"progress": False, "log": lambda m: None}


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def published_schema(name: str) -> dict:
    return json.loads((resources.files("batchscore") / "schemas" / name).read_text())


def schema_validator(name: str) -> jsonschema.Draft202012Validator:
    """The published schema `name` as a user loads it: one file, no registry, nothing fetched."""
    schema = published_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_each_published_schema_stands_alone_and_the_job_metrics_body_is_the_summarys():
    for path in (resources.files("batchscore") / "schemas").iterdir():
        if path.name.endswith(".json"):
            refs = [
                ref for ref in re.findall(r'"\$ref": "([^"]+)"', path.read_text()) if not ref.startswith("#")
            ]
            assert refs == [], (path.name, refs)
    summary, metrics = (
        published_schema("run-summary.schema.json"),
        published_schema("job-metrics.schema.json"),
    )
    assert metrics["$defs"]["body"] == summary["$defs"]["body"]


def test_provenance_columns_are_plain_columns(tmp_path, tiny_bundle, reviews_table):
    pq.write_table(reviews_table, tmp_path / "in.parquet")
    summary = run_scoring(
        [str(tmp_path / "in.parquet")], str(tmp_path / "out.parquet"), tiny_bundle, RunOptions(), **QUIET
    )
    bundle = load_bundle(tiny_bundle)
    frame = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert set(frame["model"]) == {"tiny-test"} and set(frame["model_sha256"]) == {bundle.bundle_sha256}
    assert set(frame["run_id"]) == {summary.to_dict()["run_id"]}
    assert str(frame["scored_at"].dtype) == "datetime64[us, UTC]"
    assert frame["scored_at"].iloc[0].isoformat() == summary.to_dict()["started_at"]
    rows = duckdb.sql(
        f"select model, model_sha256, run_id, typeof(scored_at), count(*) from '{tmp_path / 'out.parquet'}' "
        "group by all"
    ).fetchall()
    assert rows == [
        ("tiny-test", bundle.bundle_sha256, summary.to_dict()["run_id"], "TIMESTAMP WITH TIME ZONE", 300)
    ]
    assert summary.to_dict()["model"]["model_sha256"] == bundle.bundle_sha256


def test_a_recalibrated_bundle_has_another_model_sha256(tmp_path, tiny_bundle, reviews_table):
    """Same weights, another temperature: weights_sha256 cannot tell them apart, model_sha256 does."""
    recalibrated = tmp_path / "recalibrated"
    shutil.copytree(tiny_bundle, recalibrated)
    config = (recalibrated / "config.json").read_text()
    (recalibrated / "config.json").write_text(config.replace('"temperature": 1.0', '"temperature": 2.0'))
    pq.write_table(reviews_table, tmp_path / "in.parquet")
    shas = []
    for model in (tiny_bundle, recalibrated):
        out = tmp_path / f"{model.name}.parquet"
        run_scoring([str(tmp_path / "in.parquet")], str(out), model, RunOptions(), **QUIET)
        table = pq.read_table(out)
        shas.append(table.column("model_sha256")[0].as_py())
        assert table.schema.metadata[b"batchscore.model_sha256"].decode() == shas[-1]
    assert load_bundle(tiny_bundle).weights_sha256 == load_bundle(recalibrated).weights_sha256
    assert shas[0] != shas[1]


def test_no_provenance_and_an_input_column_named_model(tmp_path, tiny_bundle, reviews_table):
    table = reviews_table.append_column("model", reviews_table.column("stars"))
    pq.write_table(table, tmp_path / "in.parquet")
    with_columns = cli("run", tmp_path / "in.parquet", "-o", tmp_path / "a.parquet", "--model", tiny_bundle)
    assert (
        with_columns.exit_code == 0 and "renamed input column 'model' to 'input_model'" in with_columns.output
    )
    assert pq.read_table(tmp_path / "a.parquet").column("input_model").equals(table.column("model"))
    args = [
        "run",
        tmp_path / "in.parquet",
        "-o",
        tmp_path / "b.parquet",
        "--model",
        tiny_bundle,
        "--no-provenance",
    ]
    assert cli(*args).exit_code == 0
    plain = pq.read_table(tmp_path / "b.parquet")
    assert plain.column("model").equals(table.column("model"))  # kept under its own name
    assert "run_id" not in plain.column_names and "model_sha256" not in plain.column_names
    a = pq.read_table(tmp_path / "a.parquet").drop_columns(
        ["input_model", "model", "model_sha256", "run_id", "scored_at"]
    )
    assert a.equals(plain.drop_columns(["model"]))


def test_a_resumed_output_keeps_the_run_that_started_it(tmp_path, tiny_bundle, reviews_table, monkeypatch):
    pq.write_table(reviews_table, tmp_path / "in.parquet")
    options = RunOptions(window_rows=40)
    monkeypatch.setattr(writers, "commit_hook", crash_after("manifest updated", 3))
    with pytest.raises(Crash):
        run_scoring(
            [str(tmp_path / "in.parquet")], str(tmp_path / "out.parquet"), tiny_bundle, options, **QUIET
        )
    manifest = json.loads((tmp_path / ".out.parquet.parts" / "manifest.json").read_text())
    first_run = manifest["run"]["run_id"]
    assert manifest["schema_version"] == 1
    monkeypatch.setattr(writers, "commit_hook", None)
    resumed = run_scoring(
        [str(tmp_path / "in.parquet")],
        str(tmp_path / "out.parquet"),
        tiny_bundle,
        RunOptions(window_rows=40, resume=True),
        **QUIET,
    ).to_dict()
    output = pq.read_table(tmp_path / "out.parquet")
    assert output.column("run_id").unique().to_pylist() == [first_run] != [resumed["run_id"]]
    assert len(output.column("scored_at").unique()) == 1
    assert output.schema.metadata[b"batchscore.run_id"].decode() == first_run
    assert resumed["earlier_run_ids"] == [first_run]
    assert resumed["rows_scored_this_run"] == 300 - 120


def test_summary_json_is_one_line_matching_its_schema(tmp_path, tiny_bundle, reviews_table):
    pq.write_table(reviews_table, tmp_path / "in.parquet")
    validator = schema_validator("run-summary.schema.json")
    ok = CliRunner().invoke(
        main, ["run", str(tmp_path / "in.parquet"), "--model", str(tiny_bundle), "--summary-json", "-"]
    )
    assert ok.exit_code == 0
    assert ok.stdout.count("\n") == 1 and ok.stdout.endswith("}\n")  # the whole document is the last line
    validator.validate(json.loads(ok.stdout))
    failed = CliRunner().invoke(
        main, ["run", str(tmp_path / "missing.csv"), "--summary-json", str(tmp_path / "s.json")]
    )
    assert failed.exit_code == 8
    text = (tmp_path / "s.json").read_text()
    assert text.count("\n") == 1
    validator.validate(json.loads(text))
    bad = json.loads(ok.stdout) | {"schema_version": 2}
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(bad)  # the schema is strict: a changed document must bump its version


def test_job_summary_json_and_metrics_match_their_schema(job_setup, tmp_path):
    result = CliRunner().invoke(
        main, ["job", str(job_setup), "--date", "2026-11-28", "--summary-json", "-", "-q"]
    )
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout)
    validator = schema_validator("job-metrics.schema.json")
    validator.validate(line)
    metrics = json.loads((tmp_path / "scored" / "_metrics" / "date=2026-11-28" / "metrics.json").read_text())
    validator.validate(metrics)
    assert {k: v for k, v in metrics.items() if k != "finished_at"} == {
        k: v for k, v in line.items() if k != "finished_at"
    }
    assert line["date"] == date(2026, 11, 28).isoformat() and line["rows"] == 180
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**line, "unexpected": 1})
    owner = json.loads((tmp_path / "scored" / "_batchscore_job.json").read_text())
    table = owner.pop("table")  # the types the first night fixed for every later one
    assert owner == {
        "schema_version": 1,
        "job": "nightly_test",
        "input": line["input"].replace("2026-11-28", "{date}"),
        "format": "parquet",
    }
    assert table["night"] == "2026-11-28" and table["types"] == {"review_id": "int64", "stars": "int8"}


def test_predict_json_lines_carry_their_schema_version(tiny_bundle):
    result = cli("predict", "good film", "", "--model", tiny_bundle, "--json")
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["schema_version"] for line in lines] == [1, 1] and lines[1]["error"] == "empty text"


def test_evaluate_json_matches_its_schema(tmp_path, tiny_bundle, reviews_table):
    labeled = reviews_table.append_column("label", pa.array(reviews_table.column("stars").to_numpy() > 3))
    pq.write_table(labeled, tmp_path / "labeled.parquet")
    result = cli(
        "evaluate", tmp_path / "labeled.parquet", "--model", tiny_bundle, "--json", "--against", tiny_bundle
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    schema_validator("evaluate-report.schema.json").validate(report)
    assert report["schema_version"] == 1 and report["comparison"]["mcnemar_p"] == 1.0
