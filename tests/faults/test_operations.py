"""The operator's view: every exit observable, options and job files checked, honest reruns."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import batchscore.io.writers as writers
from batchscore.interfaces.cli import main
from batchscore.interfaces.jobs import run_job
from tests.helpers import HOOKED_RUN, Crash, crash_after, quiet

DAY = date(2026, 11, 28)


def cli(*args, **kwargs):
    return CliRunner().invoke(main, [*map(str, args)], **kwargs)


def bad_rows_file(tmp_path):
    texts = pa.array(["good film", None, None, "bad film"], pa.string())
    pq.write_table(pa.table({"text": texts}), tmp_path / "r.parquet")
    return tmp_path / "r.parquet"


# 1: every exit reports ---------------------------------------------------------------------------
def test_failed_run_still_writes_its_summary(tmp_path, tiny_bundle):
    source = bad_rows_file(tmp_path)
    result = cli(
        "run", source, "--model", tiny_bundle, "--summary-json", tmp_path / "s.json", "--no-progress"
    )
    assert result.exit_code == 6
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["status"] == "failed" and summary["exit_code"] == 6
    assert summary["errors"] == {"null text": 2} and summary["rows"] == 4
    assert "above --max-error-rate" in summary["error"]
    assert "run failed (exit 6)" in result.output and "errors 2" in result.output


@pytest.mark.parametrize(
    ("flags", "code", "status"), [([], 3, "failed"), (["--skip-bad-files"], 7, "bad files skipped")]
)
def test_bad_input_exits_write_the_summary_too(tmp_path, tiny_bundle, reviews_table, flags, code, status):
    (tmp_path / "in").mkdir()
    pq.write_table(reviews_table, tmp_path / "in" / "good.parquet")
    (tmp_path / "in" / "broken.parquet").write_bytes(b"PAR1 not really")
    args = ["run", tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_bundle, "--no-progress", *flags]
    result = cli(*args, "--summary-json", tmp_path / "s.json")
    assert result.exit_code == code
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["status"], summary["exit_code"]) == (status, code)
    assert summary["rows"] == (reviews_table.num_rows if code == 7 else 0)


def test_summary_json_dash_is_stdout(tmp_path, tiny_bundle):
    source = bad_rows_file(tmp_path)
    result = CliRunner().invoke(
        main,
        ["run", str(source), "--model", str(tiny_bundle), "--summary-json", "-", "--max-error-rate", "1"],
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["rows"] == 4
    assert not (tmp_path / "-").exists()


def test_failing_job_writes_metrics_and_no_success(job_setup, tmp_path):
    spec = job_setup.read_text().replace("max_error_rate = 0.1", "max_error_rate = 0.0")
    job_setup.write_text(spec)
    landing = tmp_path / "landing" / "2026-11-28"
    row = pq.read_table(landing / "a.parquet").slice(0, 1)
    row = row.set_column(row.schema.get_field_index("text"), "text", pa.array([None], pa.string()))
    pq.write_table(row, landing / "c.parquet")
    result = cli("job", job_setup, "--date", DAY.isoformat(), "--no-progress")
    assert result.exit_code == 6
    metrics = json.loads((tmp_path / "scored" / "_metrics" / "date=2026-11-28" / "metrics.json").read_text())
    assert (
        metrics["status"] == "failed" and metrics["exit_code"] == 6 and metrics["errors"] == {"null text": 1}
    )
    assert not (tmp_path / "scored" / "date=2026-11-28" / "_SUCCESS").exists()


def test_resumed_job_counts_the_whole_partition_and_only_new_rows_for_speed(
    job_setup,
    tmp_path,
    monkeypatch,
):
    monkeypatch.setattr(writers, "commit_hook", crash_after("parts removed", 1))  # after the first file
    with pytest.raises(Crash):
        run_job(job_setup, DAY, progress=False, log=quiet)
    monkeypatch.setattr(writers, "commit_hook", None)
    metrics = run_job(job_setup, DAY, progress=False, log=quiet)
    assert metrics["rows"] == 180 and metrics["files_already_done"] == 1
    assert 0 < metrics["rows_scored_this_run"] < 180
    again = run_job(job_setup, DAY, progress=False, log=quiet)  # everything already done
    assert again["rows"] == 180 and again["rows_scored_this_run"] == metrics["rows_scored_this_run"]
    assert again["rows_per_second"] == metrics["rows_per_second"] and len(again["reruns"]) == 1


# 2: job files checked at load -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('max_error_rate = "high"', "max_error_rate"),
        ("max_error_rate = 2.0", "max_error_rate"),
        ('engine = "spark"', "engine"),
        ("window_rows = 0", "window_rows"),
        ("keep_text = 1", "keep_text"),
        ('input = "landing/{when}/"', "{when}"),
        ('stale_outputs = "ignore"', "stale_outputs"),
    ],
)
def test_bad_job_files_are_exit_2_naming_the_key(tmp_path, line, named):
    key = line.split(" =")[0]
    base = {"name": '"x"', "input": '"landing/{date}/"', "output": f'"{tmp_path}/out"'}
    base[key] = line.split("= ", 1)[1]
    spec = tmp_path / "job.toml"
    spec.write_text("[job]\n" + "".join(f"{k} = {v}\n" for k, v in base.items()))
    result = cli("job", spec, "--date", "2026-11-28")
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert not (tmp_path / "out").exists()


def test_malformed_toml_is_exit_2(tmp_path):
    spec = tmp_path / "job.toml"
    spec.write_text("[job\nname = 'x'\n")
    result = cli("job", spec, "--date", "2026-11-28")
    assert result.exit_code == 2 and "not valid TOML" in result.output


# 3: jobs ----------------------------------------------------------------------------------------------
def test_no_input_for_the_date_is_exit_8_and_creates_no_partition(job_setup, tmp_path):
    result = cli("job", job_setup, "--date", "2026-11-30", "--no-progress")
    assert result.exit_code == 8 and "the pattern matches no files" in result.output
    assert not (tmp_path / "scored").exists()  # a job that never ran here creates no output root
    assert cli("job", job_setup, "--date", "2026-11-28", "--no-progress").exit_code == 0
    result = cli("job", job_setup, "--date", "2026-11-30", "--no-progress")
    assert result.exit_code == 8 and not (tmp_path / "scored" / "date=2026-11-30").exists()
    metrics = json.loads((tmp_path / "scored" / "_metrics" / "date=2026-11-30" / "metrics.json").read_text())
    assert metrics["exit_code"] == 8


def test_outputs_whose_input_is_gone_are_removed_before_success(job_setup, tmp_path):
    partition = tmp_path / "scored" / "date=2026-11-28"
    run_job(job_setup, DAY, progress=False, log=quiet)
    (tmp_path / "landing" / "2026-11-28" / "b.parquet").unlink()  # removed upstream
    metrics = run_job(job_setup, DAY, progress=False, log=quiet)
    assert sorted(p.name for p in partition.iterdir()) == ["_SUCCESS", "a.parquet"]
    assert metrics["rows"] == 50 and metrics["stale_outputs_removed"] == ["b.parquet"]
    assert pq.read_table(partition).num_rows == 50  # the partition says what metrics.json says


def test_stale_outputs_can_fail_the_job_instead(job_setup, tmp_path):
    run_job(job_setup, DAY, progress=False, log=quiet)
    job_setup.write_text(job_setup.read_text() + 'stale_outputs = "fail"\n')
    (tmp_path / "landing" / "2026-11-28" / "b.parquet").unlink()
    result = cli("job", job_setup, "--date", DAY.isoformat(), "--no-progress")
    assert result.exit_code == 5 and "b.parquet" in result.output
    assert not (tmp_path / "scored" / "date=2026-11-28" / "_SUCCESS").exists()


@pytest.mark.slow
def test_interrupted_job_says_to_rerun_the_job(job_setup, tmp_path):
    args = ["job", str(job_setup), "--date", DAY.isoformat(), "--no-progress"]
    stopped = subprocess.run(
        [sys.executable, "-c", HOOKED_RUN, "SIGTERM", "manifest updated", "1", *args],
        capture_output=True,
        text=True,
    )
    assert stopped.returncode == 130, stopped.stderr
    assert "Rerun the job for this date" in stopped.stderr and "--resume" not in stopped.stderr
    metrics = json.loads((tmp_path / "scored" / "_metrics" / "date=2026-11-28" / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["exit_code"] == 130
    rerun = subprocess.run([sys.executable, "-m", "batchscore", *args], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert pq.read_table(tmp_path / "scored" / "date=2026-11-28").num_rows == 180


# 4: output naming ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["scored.csv", "scored.json", "scored.csv.gz"])
def test_output_with_a_non_parquet_extension_is_refused(tmp_path, tiny_bundle, name):
    source = bad_rows_file(tmp_path)
    result = cli("run", source, "-o", tmp_path / name, "--model", tiny_bundle)
    assert result.exit_code == 2 and "writes Parquet" in result.output
    assert not (tmp_path / name).exists()


def test_hive_style_subfolders_map_one_to_one(tmp_path, tiny_bundle, reviews_table):
    for part, rows in (("country=fr", slice(0, 10)), ("country=de", slice(10, 25))):
        (tmp_path / "landing" / part).mkdir(parents=True)
        pq.write_table(reviews_table[rows], tmp_path / "landing" / part / "part-0.parquet")
    result = cli("run", tmp_path / "landing", "-o", tmp_path / "out", "--model", tiny_bundle, "--no-progress")
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.parquet")) == [
        "country=de/part-0.parquet",
        "country=fr/part-0.parquet",
    ]
    assert pq.read_table(tmp_path / "out").num_rows == 25


# 5: Unix conventions -------------------------------------------------------------------------------------
def test_predict_dash_reads_stdin(tiny_bundle):
    result = CliRunner().invoke(
        main, ["predict", "-", "--model", str(tiny_bundle), "--json"], input="good film\nawful plot\n"
    )
    assert result.exit_code == 0
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == ["good film", "awful plot"]


def test_every_log_line_is_prefixed_and_timestamped_off_a_terminal(tmp_path, tiny_bundle):
    source = bad_rows_file(tmp_path)
    result = cli("run", source, "--model", tiny_bundle, "--max-error-rate", "1", "--no-progress")
    lines = result.stderr.splitlines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ batchscore: ", line) for line in lines)
    assert any(f"output {tmp_path / 'r.scored.parquet'}" in line for line in lines)  # says where it went
    quiet_run = cli("run", source, "--model", tiny_bundle, "--max-error-rate", "1", "--overwrite", "-q")
    assert quiet_run.exit_code == 0 and quiet_run.stderr == ""


# 6: delimiter hint ----------------------------------------------------------------------------------------
def test_semicolon_file_with_commas_in_the_text_gets_the_hint(tmp_path, tiny_bundle):
    (tmp_path / "r.csv").write_text("id;text\n1;good, very good\n2;bad, bad, bad\n")
    result = cli("run", tmp_path / "r.csv", "--model", tiny_bundle)
    assert result.exit_code == 3 and "--csv-delimiter ';'" in result.output


def test_a_run_with_more_outputs_than_files_it_may_open_is_refused_before_any_lock(tmp_path, tiny_bundle):
    """Every output is locked before a row is read: where `ulimit -n` cannot hold them all, the run
    says so (exit 2) instead of failing part-way with "too many open files"."""
    import resource

    (tmp_path / "in").mkdir()
    for i in range(80):
        pq.write_table(pa.table({"text": [f"good film number {i}"]}), tmp_path / "in" / f"p{i:02d}.parquet")

    def run_with_limit(files: int) -> subprocess.CompletedProcess:
        command = [
            sys.executable,
            "-m",
            "batchscore",
            "run",
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / "out"),
        ]
        return subprocess.run(
            [*command, "--model", str(tiny_bundle), "--no-progress", "--overwrite"],
            capture_output=True,
            text=True,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (files, files)),
        )

    refused = run_with_limit(300)  # 80 outputs + 256 spare do not fit
    assert refused.returncode == 2, refused.stderr
    assert "80 outputs" in refused.stderr and "ulimit -n" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    done = run_with_limit(400)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "out").glob("*.parquet"))) == 80
