"""First contact with the command line: one-line errors, honest summaries, the recipe, the extras."""

from __future__ import annotations

import re
import subprocess
import sys
from unittest import mock

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from batchscore.interfaces.cli import RECIPES, _as_flags, main
from batchscore.model.bundle import load_bundle
from batchscore.monitoring.summary import RunSummary


def stderr_lines(*args: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "batchscore", *args], capture_output=True, text=True, timeout=300
    )
    return done.returncode, done.stderr.strip().splitlines()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "--bogus", "x"], ("No such option", "--bogus")),
        (["run"], ("Missing argument", "INPUTS")),
        (["run", "x.parquet", "--max-tokens", "0"], ("--max-tokens", "0 is not in the range")),
        (["train", "--epochs", "0", "-o", "m"], ("--epochs",)),
    ],
)
def test_click_usage_errors_are_one_batchscore_line_exit_2(args, says):
    """Click words the problem (its wording varies by release); batchscore makes it one line, exit 2."""
    code, lines = stderr_lines(*args)
    assert code == 2 and len(lines) == 1, lines
    assert "batchscore: error:" in lines[0] and "--help" in lines[0]
    assert all(fragment in lines[0] for fragment in says), lines[0]


def test_a_refusal_before_any_work_prints_the_error_line_alone(tmp_path, tiny_bundle, reviews_table):
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    code, lines = stderr_lines("run", str(tmp_path / "r.parquet"), "-o", str(tmp_path / "s.csv"))
    assert code == 2 and len(lines) == 1 and "writes Parquet" in lines[0]
    assert (
        stderr_lines("run", str(tmp_path / "r.parquet"), "--model", str(tiny_bundle), "--no-progress")[0] == 0
    )
    code, lines = stderr_lines("run", str(tmp_path / "r.parquet"), "--model", str(tiny_bundle))  # again
    assert code == 5 and len(lines) == 1 and "already exists" in lines[0]


def test_a_log_reader_that_goes_away_neither_stops_nor_fails_the_run(tmp_path, tiny_bundle, reviews_table):
    """`batchscore run ... 2>&1 | head -1`, or a log shipper that died: every write to stderr fails,
    yet the scores are written whole and the exit code is the run's own."""
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    output = tmp_path / "s.parquet"
    command = [sys.executable, "-m", "batchscore", "run", str(tmp_path / "r.parquet"), "-o", str(output)]
    command += ["--model", str(tiny_bundle)]
    # scored; refused, since the output exists; scored again with a progress bar drawn to nobody
    for extra, expected_code in ((["--no-progress"], 0), ([], 5), (["--progress", "--overwrite"], 0)):
        process = subprocess.Popen([*command, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        process.stderr.close()  # the reader is gone: writes to the pipe fail (EPIPE)
        assert process.wait(timeout=300) == expected_code
    scored = pq.read_table(output)
    assert scored.column("review_id").equals(reviews_table.column("review_id"))
    assert scored.column("prob_positive").null_count == 0


def test_an_interrupted_summary_says_what_was_committed():
    summary = RunSummary(status="interrupted", exit_code=130, rows=0, rows_scored_now=1000, seconds=2.0)
    text = summary.format()
    assert "rows 0 in finished outputs; 1,000 scored and committed by this run" in text
    assert "kept" in text and "(1,000 scored now" not in text
    assert summary.did_work and not RunSummary(status="failed", exit_code=2).did_work


def test_drift_with_no_rows_is_unavailable_not_ok():
    from batchscore.monitoring.drift import DriftPolicy, _judge

    judged = _judge({"rows": 0}, {"rows": 10}, DriftPolicy())
    assert judged["status"] == "unavailable"


def test_recipe_imdb_is_the_bundled_models_settings_and_options_override_it(tmp_path):
    with mock.patch("batchscore.training.job.run_training") as run_training:
        result = CliRunner().invoke(
            main,
            [
                "train",
                "--train",
                "README.md",
                "-o",
                str(tmp_path / "m"),
                "--recipe",
                "imdb",
                "--dropout",
                "0.3",
            ],
        )
    assert result.exit_code == 0, result.output
    given = run_training.call_args.kwargs
    recipe = RECIPES["imdb"]
    assert {key: given[key] for key in recipe} == {**recipe, "dropout": 0.3}
    assert (given["epochs"], given["lm_pretrain_epochs"], given["pooling"]) == (6, 2, ("max", "mean"))
    card_command = load_bundle().card["command"]
    for flag in re.split(r" (?=--)", _as_flags(recipe)):  # the recipe is what trained the bundled model
        assert flag in card_command.split(" -o ")[0]


def test_a_missing_extra_is_a_usage_error_naming_the_pip_command(tmp_path):
    night = tmp_path / "root" / "_metrics" / "date=2026-11-28"
    night.mkdir(parents=True)
    (night / "metrics.json").write_text('{"date": "2026-11-28"}')
    with mock.patch.dict(sys.modules, {"plotly.graph_objects": None, "plotly.offline": None}):
        result = CliRunner().invoke(main, ["report", str(tmp_path / "root"), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "pip install 'batchscore[report]'" in result.output


def test_the_program_runs_without_pandas_and_writes_what_the_library_writes(
    tmp_path, tiny_bundle, reviews_table
):
    """A local `run` keeps pandas out of its process (a sixth of a small run's start-up); its
    output must not depend on that: the same rows, types and values as a run where pandas is loaded."""
    from tests.helpers import score_files

    texts = reviews_table.column("text").to_pylist()
    texts[3], texts[7] = None, ""  # nulls and empty texts go through the error and n_tokens paths
    table = reviews_table.set_column(1, "text", pa.array(texts).dictionary_encode())  # categoricals
    pq.write_table(table, tmp_path / "in.parquet")
    pacsv.write_csv(reviews_table, tmp_path / "in.csv")
    watch = (
        "import atexit, sys; atexit.register(lambda: print('pandas loaded:', 'pandas' in sys.modules, "
        "file=sys.stderr)); from batchscore.__main__ import main; sys.argv[0] = 'batchscore'; main()"
    )
    for name in ("in.parquet", "in.csv"):
        program_out, library_out = tmp_path / f"program-{name}.parquet", tmp_path / f"library-{name}.parquet"
        done = subprocess.run(
            [sys.executable, "-c", watch, "run", str(tmp_path / name), "-o", str(program_out),
             "--model", str(tiny_bundle), "--no-progress"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0 and "pandas loaded: False" in done.stderr, done.stderr
        score_files([tmp_path / name], library_out, tiny_bundle)
        assert "pandas" in sys.modules
        varying = ["run_id", "scored_at"]
        program, library = pq.read_table(program_out), pq.read_table(library_out)
        assert program.drop(varying).equals(library.drop(varying)), name
        assert program.schema.equals(library.schema)


def test_asking_for_a_gpu_the_machine_lacks_is_a_usage_error(tmp_path, tiny_bundle, reviews_table):
    import jax

    if any(device.platform == "gpu" for device in jax.devices()):
        pytest.skip("this machine has a GPU")
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    result = CliRunner().invoke(
        main,
        ["run", str(tmp_path / "r.parquet"), "--model", str(tiny_bundle), "--device", "gpu", "--no-progress"],
    )
    assert result.exit_code == 2 and "--device gpu: JAX sees no GPU" in result.output, result.output


def test_a_drift_key_at_the_top_of_a_job_says_where_it_belongs(job_setup):
    job_setup.write_text(job_setup.read_text() + 'fail_on_drift = "alert"\n')
    result = CliRunner().invoke(main, ["job", str(job_setup), "--date", "2026-11-27"])
    assert result.exit_code == 2
    assert "[job] fail_on_drift belongs under [job.drift]; move it there" in result.output


def test_a_finished_run_does_not_talk_about_resuming(tmp_path, tiny_bundle, reviews_table):
    (tmp_path / "in").mkdir()
    pq.write_table(reviews_table, tmp_path / "in" / "good.parquet")
    (tmp_path / "in" / "bad.parquet").write_bytes(b"not parquet at all")
    result = CliRunner().invoke(
        main,
        ["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(tiny_bundle),
         "--skip-bad-files", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 7, result.output
    assert "committed by this run" in result.output and "resuming" not in result.output
    assert "batchscore: run finished, bad files skipped (exit 7)" in result.output


def test_the_lazy_api_names_are_listed_by_dir():
    import batchscore

    assert {"load_model", "Model"} <= set(dir(batchscore))


def test_the_report_is_named_html_and_says_so_on_one_prefixed_line(tmp_path):
    pytest.importorskip("plotly")
    night = tmp_path / "root" / "_metrics" / "date=2026-11-27"
    night.mkdir(parents=True)
    (night / "metrics.json").write_text('{"date": "2026-11-27", "status": "ok", "rows": 3}')
    refused = CliRunner().invoke(main, ["report", str(tmp_path / "root"), "-o", str(tmp_path / "r.pdf")])
    assert refused.exit_code == 2 and "the report is an HTML page; name it .html" in refused.output
    assert not (tmp_path / "r.pdf").exists()
    done = CliRunner().invoke(main, ["report", str(tmp_path / "root"), "-o", str(tmp_path / "r.html")])
    assert done.exit_code == 0 and re.search(r"batchscore: wrote .*r\.html \(1 night\(s\)\)", done.output)


def test_debug_shows_the_error_as_python_does_and_only_for_that_invocation(tmp_path):
    from batchscore.base.errors import NoInputFound

    missing = str(tmp_path / "nothing-here.parquet")
    debugged = CliRunner().invoke(main, ["run", missing, "--debug"])
    assert isinstance(debugged.exception, NoInputFound)  # raised, not turned into a line and an exit code
    plain = CliRunner().invoke(main, ["run", missing])  # the next invocation is not in debug mode
    assert plain.exit_code == 8 and isinstance(plain.exception, SystemExit)
    assert "nothing-here.parquet" in plain.output and "Traceback" not in plain.output
