"""Drift signals: profiles, statistics, status and exit codes, job settings, and the HTML report."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from batchscore.base.errors import UsageError
from batchscore.interfaces.cli import main
from batchscore.interfaces.jobs import JobSpec
from batchscore.model.bundle import default_bundle_path
from batchscore.monitoring.drift import DriftPolicy, Profile, compare, psi, should_fail
from batchscore.monitoring.report_page import collect_metrics, render
from batchscore.pipeline.options import RunOptions
from tests.helpers import ROOT

IMDB_TEST = ROOT.parent / "shared" / "data" / "imdb" / "test.parquet"


def profile_of(n_tokens, probs, unknown=0, max_tokens=500) -> dict:
    profile = Profile(max_tokens=max_tokens)
    n_tokens = np.asarray(n_tokens, np.int32)
    ids = np.full(int(n_tokens.sum()), 5, np.int32)
    ids[:unknown] = 1  # UNK_ID
    profile.add(ids, n_tokens, np.asarray(probs, np.float64))
    return profile.to_dict()


def test_profile_counts_quantiles_and_fixed_bins():
    d = profile_of([5, 15, 30, 600, 5000], [0.05, 0.5, 0.95, 0.99, 1.0], unknown=10)
    assert d["rows"] == 5 and d["tokens"] == 5650
    assert d["unknown_rate"] == pytest.approx(10 / 5650)
    assert d["truncated_share"] == pytest.approx(2 / 5)  # 600 and 5000 > 500
    # bins 1-10, 11-20, 21-50, 51-100, 101-200, 201-300, 301-500, 501-1000, >1000
    assert d["length_histogram"]["counts"] == [1, 1, 1, 0, 0, 0, 0, 1, 1]
    assert d["prob_histogram"]["counts"] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 3]  # 1.0 goes to the last bin
    assert d["label_shares"] == {"negative": 0.2, "positive": 0.8}  # 0.5 is positive, as the label
    assert d["length_quantiles"]["p50"] == 30
    assert d["length_quantiles"]["p99"] == 4096  # counted together above the cap


def test_profile_counts_merge_like_one_pass():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 900, 1000).astype(np.int32)
    probs = rng.random(1000)
    ids = rng.integers(0, 50, int(lengths.sum())).astype(np.int32)
    whole = Profile()
    whole.add(ids, lengths, probs)
    merged = Profile()
    split_row = 400
    split_token = int(lengths[:split_row].sum())
    for rows, tokens in (
        (slice(0, split_row), slice(0, split_token)),
        (slice(split_row, None), slice(split_token, None)),
    ):
        part = Profile()
        part.add(ids[tokens], lengths[rows], probs[rows])
        merged.merge_counts(json.loads(json.dumps(part.to_counts())))
    assert merged.to_dict() == whole.to_dict()


def test_psi_values():
    assert psi([10, 20, 30], [10, 20, 30]) == 0.0
    assert psi([50, 50], [90, 10]) == pytest.approx(0.4 * np.log(0.9 / 0.5) - 0.4 * np.log(0.1 / 0.5))
    assert np.isfinite(psi([100, 0], [0, 100]))  # empty bins are floored, not infinite


def test_compare_statuses_and_reasons():
    reference = profile_of([50] * 500 + [200] * 500, [0.1] * 500 + [0.9] * 500, unknown=500)
    policy = DriftPolicy()
    same = compare(reference, reference, policy)
    assert same["status"] == "ok" and same["reasons"] == [] and same["psi_prob_positive"] == 0.0

    shifted = profile_of([50] * 500 + [200] * 500, [0.9] * 1000, unknown=500)
    result = compare(shifted, reference, policy)
    assert result["status"] == "alert"
    assert any("prob_positive PSI" in r for r in result["reasons"])
    assert any("label shares moved by 0.50" in r for r in result["reasons"])

    unknown = profile_of([50] * 500 + [200] * 500, [0.1] * 500 + [0.9] * 500, unknown=30000)
    result = compare(unknown, reference, policy)
    assert result["status"] == "alert" and "unknown-token rate" in result["reasons"][0]

    few = profile_of([50] * 10, [0.9] * 10)  # every statistic off, but only 10 rows
    result = compare(few, reference, policy)
    assert result["status"] == "not judged" and "not judged" in result["reasons"][0]

    assert compare(reference, None, policy)["status"] == "unavailable"
    assert compare(reference, reference, DriftPolicy(psi_warn=0.0001))["status"] == "ok"
    warn = compare(shifted, reference, DriftPolicy(psi_alert=1e9, label_shift_alert=1e9))
    assert warn["status"] == "warn"
    assert should_fail(warn, DriftPolicy(fail_on_drift="warn"))
    assert not should_fail(warn, DriftPolicy(fail_on_drift="alert"))
    assert not should_fail(warn, DriftPolicy())


def test_bad_drift_settings_are_usage_errors():
    with pytest.raises(UsageError, match="psi_warn and psi_alert"):
        RunOptions(drift=DriftPolicy(psi_warn=0.5, psi_alert=0.1))
    with pytest.raises(UsageError, match="fail_on_drift"):
        RunOptions(drift=DriftPolicy(fail_on_drift="sometimes"))


def test_shipped_bundle_has_a_reference_profile():
    config = json.loads((default_bundle_path() / "config.json").read_text())
    reference = config["card"]["reference_profile"]
    assert reference["rows"] == config["card"]["valid_data"]["rows"]
    assert sum(reference["prob_histogram"]["counts"]) == reference["rows"]
    assert 0 < reference["unknown_rate"] < 0.05


def word_salad(rows: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    word = lambda: "".join(rng.choice("bcdfghjklmnpqrstvwxz") + rng.choice("aeiou") for _ in range(3))  # noqa: E731
    return [" ".join(word() for _ in range(rng.randint(20, 120))) for _ in range(rows)]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "batchscore", *args], capture_output=True, text=True)


def test_text_unlike_the_training_data_alerts_and_fail_on_drift_exits_9(tmp_path):
    source = tmp_path / "salad.parquet"
    pq.write_table(pa.table({"text": word_salad(300)}), source)
    summary = tmp_path / "summary.json"
    result = run_cli("run", str(source), "--no-progress", "--summary-json", str(summary))
    assert result.returncode == 0, result.stderr
    drift = json.loads(summary.read_text())["drift"]
    assert drift["status"] == "alert"
    assert "unknown-token rate" in drift["reasons"][0]
    assert "drift ALERT" in result.stderr

    failed = run_cli("run", str(source), "--no-progress", "--resume", "--fail-on-drift", "alert")
    assert failed.returncode == 9, failed.stderr
    assert "unknown-token rate" in failed.stderr
    # the rerun skipped the complete output and still judged its rows: the profile is in the file
    assert "1 already complete" in failed.stderr


def job_spec(tmp_path: Path, extra: str = "") -> Path:
    spec = tmp_path / "job.toml"
    spec.write_text(
        f'[job]\nname = "drift_test"\ninput = "{tmp_path}/in/{{date}}"\noutput = "{tmp_path}/out"\n{extra}'
    )
    return spec


def test_job_drift_settings_are_checked(tmp_path):
    spec = job_spec(tmp_path, '[job.drift]\npsi_warn = 0.2\nfail_on_drift = "warn"\n')
    policy = JobSpec.load(spec).run_options().drift
    assert policy.psi_warn == 0.2 and policy.fail_on_drift == "warn"
    for bad, message in (
        ("psi_wrn = 0.2", "unknown \\[job.drift\\] keys \\['psi_wrn'\\]"),
        ('psi_warn = "high"', "psi_warn = 'high'; expected float"),
        ("psi_warn = 0.9", "psi_warn and psi_alert"),
        ('fail_on_drift = "maybe"', "fail_on_drift must be one of"),
    ):
        spec = job_spec(tmp_path, f"[job.drift]\n{bad}\n")
        result = CliRunner().invoke(main, ["job", str(spec), "--date", "2026-11-28", "--no-progress"])
        assert result.exit_code == 2, result.output
        assert re.search(message, result.output), result.output


@pytest.mark.slow
def test_job_fails_on_drift_without_success_marker_and_report_shows_it(tmp_path):
    rng = random.Random(3)
    normal = [
        f"this movie was {rng.choice(['great', 'awful', 'fine', 'boring'])} and the plot " * 3
        for _ in range(300)
    ]
    for day, texts in (("2026-11-27", normal), ("2026-11-28", normal[:250]), ("2026-11-29", word_salad(300))):
        (tmp_path / "in" / day).mkdir(parents=True)
        pq.write_table(pa.table({"text": texts}), tmp_path / "in" / day / "a.parquet")
    spec = job_spec(tmp_path, '[job.drift]\nfail_on_drift = "alert"\nunknown_ratio_warn = 3.0\n')
    codes = {}
    for day in ("2026-11-27", "2026-11-28", "2026-11-29", "2026-11-29"):  # the last date twice: a rerun
        codes[day] = run_cli("job", str(spec), "--date", day, "--no-progress").returncode
    assert codes["2026-11-29"] == 9
    assert not (tmp_path / "out" / "date=2026-11-29" / "_SUCCESS").exists()
    assert (tmp_path / "out" / "date=2026-11-29" / "a.parquet").exists()  # scored, not published
    metrics = json.loads((tmp_path / "out" / "_metrics" / "date=2026-11-29" / "metrics.json").read_text())
    assert metrics["exit_code"] == 9 and metrics["drift"]["status"] == "alert"
    assert metrics["drift"]["thresholds"]["unknown_ratio_warn"] == 3.0
    assert metrics["profile"]["rows"] == 300  # the rerun counted the rows of the complete output

    output = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(tmp_path / "out"), "-o", str(output)])
    assert result.exit_code == 0, result.output
    page = output.read_text()
    for expected in ("2026-11-27", "2026-11-28", "2026-11-29", "drift_test", "alert", "unknown-token rate"):
        assert expected in page
    assert "unknown-token rate warn 3x" in page  # the thresholds the night was judged by
    assert "Plotly.newPlot" in page and "reference (validation rows)" in page
    assert not re.search(r"""<script[^>]+src=|<link[^>]+href=["']http""", page)  # nothing fetched
    assert len(collect_metrics(str(tmp_path / "out"))) == 3
    assert "Output root &lt;b&gt;" in render(collect_metrics(str(tmp_path / "out")), "<b>")  # escaped


def test_report_on_a_root_without_metrics_is_exit_8(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 8
    assert "no date=*/metrics.json" in result.output


@pytest.mark.slow
@pytest.mark.imdb
@pytest.mark.skipif(not IMDB_TEST.exists(), reason="needs ../shared/data/imdb")
def test_imdb_test_reviews_as_a_job_are_ok(tmp_path):
    table = pq.read_table(IMDB_TEST, columns=["text"])
    rows = np.random.default_rng(0).permutation(table.num_rows)[:2000]
    (tmp_path / "in" / "2026-11-28").mkdir(parents=True)
    for shard in range(4):
        pq.write_table(table.take(rows[shard::4]), tmp_path / "in" / "2026-11-28" / f"part-{shard}.parquet")
    result = run_cli("job", str(job_spec(tmp_path)), "--date", "2026-11-28", "--no-progress")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "_metrics" / "date=2026-11-28" / "metrics.json").read_text())
    assert metrics["drift"]["status"] == "ok", metrics["drift"]
    assert metrics["drift"]["psi_prob_positive"] < 0.1 and metrics["drift"]["psi_length"] < 0.1


def test_outputs_from_before_profiles_are_named_not_judged_ok(tmp_path):
    source = tmp_path / "salad.parquet"
    pq.write_table(pa.table({"text": word_salad(250)}), source)
    output = tmp_path / "salad.scored.parquet"
    assert run_cli("run", str(source), "--no-progress").returncode == 0
    table = pq.read_table(output)  # as an older release wrote it: no profile counts in the metadata
    metadata = {k: v for k, v in table.schema.metadata.items() if k != b"batchscore.profile"}
    pq.write_table(table.replace_schema_metadata(metadata), output)
    summary = tmp_path / "summary.json"
    rerun = run_cli("run", str(source), "--no-progress", "--resume", "--summary-json", str(summary))
    assert rerun.returncode == 0, rerun.stderr
    drift = json.loads(summary.read_text())["drift"]
    assert drift["status"] == "unavailable"
    assert "250 rows are in outputs written before drift profiles" in drift["reasons"][-1]
