"""The trust boundaries: what batchscore takes from outside (folders others can write, the compilation
cache, environment values, foreign text shown to a person, globs) is checked where it comes in.

Tests of "another user" make the other user's files with chown, so they need root (as CI runs);
elsewhere they are skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from batchscore.interfaces.cli import main
from batchscore.io.console import printable
from tests.helpers import ROOT, read_scores, score_files

OTHER_USER = 65534  # "nobody"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="making another user's files needs root")


def cli(*args, env: dict | None = None):
    words = [*map(str, args)]
    return CliRunner().invoke(main, [*words, "--no-progress"] if words[0] == "run" else words, env=env)


def batchscore(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """`batchscore ARGS` in a process of its own: what reaches stderr, and the exit code it sets."""
    command = [sys.executable, "-m", "batchscore", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def source(tmp_path, reviews_table) -> Path:
    path = tmp_path / "in" / "reviews.parquet"
    path.parent.mkdir()
    pq.write_table(reviews_table, path)
    return path


@pytest.fixture
def shared(tmp_path) -> Path:
    """A folder every user can write, like /tmp (mode 1777)."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o1777)
    return folder


def forged_parts(folder: Path, output_name: str, owner: int | None, mode: int) -> Path:
    """A `.NAME.parts` folder with a manifest claiming committed rows, made before the run."""
    parts = folder / f".{output_name}.parts"
    parts.mkdir()
    (parts / "manifest.json").write_text(json.dumps({"rows_done": 100, "parts": 1, "fingerprint": {}}))
    parts.chmod(mode)
    if owner is not None:
        os.chown(parts, owner, owner)
    return parts


# folders batchscore adopts ------------------------------------------------------------------------


@as_root
@pytest.mark.parametrize("flag", ["--resume", "--overwrite", None])
def test_a_parts_folder_made_by_another_user_is_refused_not_adopted(tiny_bundle, source, shared, flag):
    parts = forged_parts(shared, "out.parquet", OTHER_USER, 0o755)
    args = ["run", source, "-o", shared / "out.parquet", "--model", tiny_bundle, *([flag] if flag else [])]
    result = cli(*args)
    assert result.exit_code == 5, result.output
    assert (
        f"{parts}: the folder of committed parts belongs to another user (uid {OTHER_USER})" in result.output
    )
    assert not (shared / "out.parquet").exists()
    assert (parts / "manifest.json").exists()  # another user's folder is not ours to delete either


@pytest.mark.parametrize("mode", [0o777, 0o757])
def test_a_parts_folder_others_can_write_is_refused(tiny_bundle, source, tmp_path, mode):
    forged_parts(tmp_path, "out.parquet", None, mode)
    result = cli("run", source, "-o", tmp_path / "out.parquet", "--model", tiny_bundle, "--resume")
    assert result.exit_code == 5, result.output
    assert "the folder of committed parts is writable by other users" in result.output
    assert not (tmp_path / "out.parquet").exists()


def test_a_run_in_a_shared_folder_still_works_when_nothing_was_planted(tiny_bundle, source, shared):
    result = cli("run", source, "-o", shared / "out.parquet", "--model", tiny_bundle)
    assert result.exit_code == 0, result.output
    assert pq.read_table(shared / "out.parquet").num_rows == 300


def test_a_job_partition_planted_as_a_link_is_refused_and_its_target_untouched(job_setup, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pq.write_table(pq.read_table(next((tmp_path / "landing").rglob("a.parquet"))), elsewhere / "keep.parquet")
    root = tmp_path / "scored"
    root.mkdir()
    (root / "date=2026-11-27").symlink_to(elsewhere, target_is_directory=True)
    result = cli("job", job_setup, "--date", "2026-11-27")
    assert result.exit_code == 5, result.output
    assert "the night's partition folder is a symbolic link" in result.output
    assert sorted(os.listdir(elsewhere)) == ["keep.parquet"]


@as_root
def test_a_job_root_of_another_user_is_refused(job_setup, tmp_path):
    root = tmp_path / "scored"
    root.mkdir()
    os.chown(root, OTHER_USER, OTHER_USER)
    result = cli("job", job_setup, "--date", "2026-11-27")
    assert result.exit_code == 5, result.output
    assert "the job's output root belongs to another user" in result.output
    assert os.listdir(root) == []


def test_stale_outputs_are_never_removed_through_a_link_inside_the_partition(job_setup, tmp_path):
    assert cli("job", job_setup, "--date", "2026-11-27").exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "other.parquet").write_bytes(b"not ours")
    (tmp_path / "scored" / "date=2026-11-27" / "linked").symlink_to(elsewhere, target_is_directory=True)
    result = cli("job", job_setup, "--date", "2026-11-27")
    assert result.exit_code == 0, result.output
    assert (elsewhere / "other.parquet").read_bytes() == b"not ours"


# the compilation cache ------------------------------------------------------------------------------


def cache_run(source: Path, output: Path, bundle: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "BATCHSCORE_COMPILATION_CACHE": str(cache)}
    return batchscore("run", source, "-o", output, "--model", bundle, "--no-progress", env=env)


@pytest.mark.slow
@pytest.mark.parametrize("who", ["writable by all", "another user's", "below a folder others can write"])
def test_a_cache_folder_that_is_not_private_is_not_used(tiny_bundle, source, tmp_path, who):
    if who == "another user's" and os.geteuid() != 0:
        pytest.skip("making another user's folder needs root")
    cache = tmp_path / "cache"
    if who == "below a folder others can write":
        open_folder = tmp_path / "open"
        open_folder.mkdir()
        open_folder.chmod(0o777)
        cache = open_folder / "cache"
    cache.mkdir(mode=0o700)
    if who == "writable by all":
        cache.chmod(0o777)
    elif who == "another user's":
        os.chown(cache, OTHER_USER, OTHER_USER)
    planted = cache / "jit_forward-planted-cache"
    planted.write_bytes(b"native code someone else wrote")
    done = cache_run(source, tmp_path / "o.parquet", tiny_bundle, cache)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "compilation cache not used" in line]
    assert (len(warnings) == 1 and str(cache) in warnings[0]) or str(cache.parent) in warnings[0], done.stderr
    assert sorted(os.listdir(cache)) == [planted.name]  # nothing read or written there
    reference = tmp_path / "private"
    reference.mkdir(mode=0o700)
    again = cache_run(source, tmp_path / "p.parquet", tiny_bundle, reference)
    assert again.returncode == 0 and "compilation cache" not in again.stderr
    assert read_scores(tmp_path / "o.parquet").equals(read_scores(tmp_path / "p.parquet"))
    assert os.listdir(reference)  # a private folder is used


# environment values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BATCHSCORE_CPU_DEVICES", "abc"),
        ("BATCHSCORE_CPU_DEVICES", "0"),
        ("BATCHSCORE_CPU_DEVICES", "4096"),
        ("BATCHSCORE_STOP_GRACE_SECONDS", "abc"),
        ("BATCHSCORE_STOP_GRACE_SECONDS", "inf"),
        ("BATCHSCORE_STOP_GRACE_SECONDS", "nan"),
        ("BATCHSCORE_STOP_GRACE_SECONDS", "-5"),
        ("BATCHSCORE_XLA_DEFAULTS", "maybe"),
        ("BATCHSCORE_GPU_RNN", "fast"),
        ("BATCHSCORE_S3_RETRIES", "2.5"),
        ("BATCHSCORE_S3_CONNECT_TIMEOUT", "0"),
    ],
)
def test_a_bad_environment_value_is_one_line_naming_the_variable_exit_2(tmp_path, name, value):
    done = batchscore("predict", "good film", env={**os.environ, name: value})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert f"environment variable {name}={value!r}: expected" in lines[0]


def test_a_bad_environment_value_does_not_stop_version_or_help():
    env = {**os.environ, "BATCHSCORE_CPU_DEVICES": "abc"}
    for args in (["--version"], ["--help"]):
        done = batchscore(*args, env=env)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


def test_the_python_api_refuses_a_bad_environment_value_too(monkeypatch):
    from batchscore.base.errors import UsageError
    from batchscore.interfaces.api import load_model

    monkeypatch.setenv("BATCHSCORE_STOP_GRACE_SECONDS", "soon")
    with pytest.raises(UsageError, match="BATCHSCORE_STOP_GRACE_SECONDS"):
        load_model()


def test_every_variable_batchscore_reads_is_declared():
    """No module reads the environment but the one gate (and XLA_FLAGS, RAY_ADDRESS: other tools')."""
    from batchscore.base.environment import VARIABLES

    read = set()
    for path in (ROOT / "batchscore").rglob("*.py"):
        read |= set(re.findall(r"environ(?:\.get)?\(\s*[\"']([A-Z_]+)", path.read_text()))
        read |= set(re.findall(r"environ\[[\"']([A-Z_]+)[\"']\]", path.read_text()))
    assert read - set(VARIABLES) <= {"XLA_FLAGS", "RAY_ADDRESS"}, read - set(VARIABLES)


# outputs stay below -o, visible to readers ---------------------------------------------------------


def test_a_glob_that_climbs_out_of_its_folder_is_refused_before_any_work(
    tmp_path, tiny_bundle, reviews_table
):
    (tmp_path / "land" / "s1").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    pq.write_table(reviews_table, tmp_path / "other" / "x.parquet")
    pattern = f"{tmp_path}/land/s*/../../other/*.parquet"
    result = cli("run", pattern, "-o", tmp_path / "out", "--model", tiny_bundle)
    assert result.exit_code == 2, result.output
    assert "leaves the output directory" in result.output
    assert sorted(os.listdir(tmp_path / "other")) == ["x.parquet"] and not (tmp_path / "out").exists()


def test_an_input_whose_output_readers_would_skip_is_refused(tmp_path, tiny_bundle, reviews_table):
    (tmp_path / "in").mkdir()
    pq.write_table(reviews_table, tmp_path / "in" / "_part-1.parquet")
    pq.write_table(reviews_table, tmp_path / "in" / "part-2.parquet")
    result = cli("run", f"{tmp_path}/in/*.parquet", "-o", tmp_path / "out", "--model", tiny_bundle)
    assert result.exit_code == 2, result.output
    assert "_part-1.parquet, which readers of the output directory skip as hidden" in result.output


def test_an_empty_output_is_refused_not_the_current_directory(tmp_path, tiny_bundle, source, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("run", source, "-o", "", "--model", tiny_bundle)
    assert result.exit_code == 2 and "-o is empty" in result.output, result.output
    assert sorted(os.listdir(tmp_path)) == ["in"]


def test_a_file_and_a_folder_of_one_name_are_refused_before_scoring(tmp_path, tiny_bundle, reviews_table):
    (tmp_path / "in" / "x.parquet").mkdir(parents=True)
    pq.write_table(reviews_table, tmp_path / "in" / "x.parquet" / "y.parquet")
    (tmp_path / "in" / "x.csv").write_text("text\ngood film\n")
    result = cli("run", tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_bundle)
    assert result.exit_code == 2, result.output
    assert "as a file and as a folder" in result.output and not (tmp_path / "out").exists()


# foreign text shown to a person --------------------------------------------------------------------


def test_foreign_text_cannot_start_a_line_of_its_own():
    forged = "pid 1\nbatchscore: 1 file(s) scored\r\x1b[2Kok"
    shown = printable(forged)
    assert "\n" not in shown and "\r" not in shown and "\x1b" not in shown
    assert shown == "pid 1\\x0abatchscore: 1 file(s) scored\\x0d\\x1b[2Kok"
    assert printable("caf\udce9.csv") == "caf\\xe9.csv"  # a file name that is not UTF-8


def test_another_runs_lock_text_is_shown_on_one_line(tiny_bundle, source, tmp_path):
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".r.parquet.lock"
    lock.write_text("pid 9\n2026-12-01T00:00:00Z batchscore: 1 file(s) scored\n")
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = batchscore("run", source, "-o", out / "r.parquet", "--model", tiny_bundle, "--no-progress")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 5 and len(lines) == 1, done.stderr
    assert "pid 9\\x0a2026-12-01T00:00:00Z batchscore: 1 file(s) scored" in lines[0]


def test_a_file_name_that_is_not_utf8_is_named_in_the_error(tmp_path, tiny_bundle):
    folder = tmp_path / "in"
    folder.mkdir()
    name = os.fsencode(folder) + b"/caf\xe9.csv"
    with open(name, "wb") as handle:
        handle.write(b"id,text\n1,good\n2,bad,extra\n")
    done = batchscore("run", folder, "-o", tmp_path / "out", "--model", tiny_bundle, "--no-progress")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 3, done.stderr
    assert "caf\\xe9.csv" in lines[-1] and "Traceback" not in done.stderr


def metrics_root(tmp_path: Path, **fields) -> Path:
    night = {"job": "nightly", "date": "2026-11-27", "status": "ok", "rows": 10, "error_rows": 0, **fields}
    folder = tmp_path / "root" / "_metrics" / "date=2026-11-27"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(night))
    return tmp_path / "root"


INJECTED = '<img src=x onerror="document.title=1">'


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("exit_code", INJECTED, "exit_code must be a number"),
        ("date", "</script><script>alert(1)</script>", "date must be a date YYYY-MM-DD"),
        ("rows", 10**400, "rows must be a number"),
        ("rows", [[[[1]]]], "rows must be a number"),
        ("drift", {"psi_length": {"a": 1}}, "drift.psi_length must be a number"),
        ("labels", {"positive": "many"}, "labels.positive must be a number"),
    ],
)
def test_a_metrics_value_of_the_wrong_type_is_refused_naming_file_and_key(tmp_path, field, value, says):
    pytest.importorskip("plotly")
    root = metrics_root(tmp_path, **{field: value})
    result = cli("report", root, "-o", tmp_path / "r.html")
    assert result.exit_code == 3, result.output
    assert "metrics.json" in result.output and says in result.output
    assert not (tmp_path / "r.html").exists()


def test_a_deeply_nested_metrics_file_is_refused(tmp_path):
    pytest.importorskip("plotly")
    folder = tmp_path / "root" / "_metrics" / "date=2026-11-27"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("[" * 100_000 + "]" * 100_000)
    result = cli("report", tmp_path / "root", "-o", tmp_path / "r.html")
    assert result.exit_code == 3 and "metrics.json" in result.output, result.output


def test_foreign_text_in_the_report_is_escaped_so_the_page_runs_only_its_own_scripts(tmp_path):
    pytest.importorskip("plotly")
    clean = metrics_root(tmp_path / "a", exit_code=5, status="failed")
    cli("report", clean, "-o", tmp_path / "clean.html")
    hostile = metrics_root(
        tmp_path / "b",
        job=f"<script>alert(1)</script>{INJECTED}",
        status=INJECTED,
        errors={INJECTED: 1},
        drift={"status": INJECTED, "reasons": [f"</script>{INJECTED}"]},
    )
    result = cli("report", hostile, "-o", tmp_path / "hostile.html")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "hostile.html").read_text()
    expected = (tmp_path / "clean.html").read_text()
    for tag in ("<script", "<img", 'onerror="'):  # no element or handler of the metrics' own
        assert page.count(tag) == expected.count(tag), tag
    assert "&lt;img src=x onerror=&quot;document.title=1&quot;&gt;" in page


def test_a_ray_address_nobody_answers_is_refused_at_once(tmp_path, tiny_bundle, source):
    pytest.importorskip("ray")
    done = batchscore(
        "run",
        source,
        "-o",
        tmp_path / "o.parquet",
        "--model",
        tiny_bundle,
        "--engine",
        "ray",
        "--ray-address",
        "127.0.0.1:1",
        "--no-progress",
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "--ray-address 127.0.0.1:1: no Ray cluster answers there" in lines[0]


# late failures and wrong codes ----------------------------------------------------------------------


def test_summary_json_on_a_full_disk_is_an_output_problem(tiny_bundle, source, tmp_path):
    result = cli(
        "run", source, "-o", tmp_path / "o.parquet", "--model", tiny_bundle, "--summary-json", "/dev/full"
    )
    assert result.exit_code == 5, result.output
    assert "--summary-json /dev/full: cannot write it" in result.output


def test_predict_into_a_reader_that_leaves_ends_quietly(tiny_bundle):
    lines = "".join(f"good film number {i}\n" for i in range(5000))
    pipeline = (
        f"{sys.executable} -m batchscore predict --json --model {tiny_bundle} - 2>&1 | head -1; "
        'echo "exit ${PIPESTATUS[0]}"'
    )
    done = subprocess.run(["bash", "-c", pipeline], input=lines, capture_output=True, text=True, timeout=300)
    first, status = done.stdout.strip().splitlines()
    assert "good film number 0" in first and status == "exit 0", done.stdout


@pytest.mark.parametrize(
    ("template", "says"),
    [("{date:%Y}", "{date:%Y} is not a placeholder"), ("{date!r}", "{date!r} is not a placeholder")],
)
def test_a_job_input_placeholder_with_a_format_is_refused_when_the_job_is_read(job_setup, template, says):
    text = job_setup.read_text()
    job_setup.write_text(re.sub(r'input = ".*"', f'input = "landing/{template}/*.parquet"', text))
    result = cli("job", job_setup, "--date", "2026-11-27")
    assert result.exit_code == 2 and says in result.output, result.output


def test_a_job_output_starting_with_a_tilde_is_refused(job_setup, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job_setup.write_text(re.sub(r'output = ".*"', 'output = "~/scored"', job_setup.read_text()))
    result = cli("job", job_setup, "--date", "2026-11-27")
    assert result.exit_code == 2 and "write the home directory out in full" in result.output
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize("day", ["2026-W01", "20260101", "2026-1-1", "2026-02-30"])
def test_a_job_date_in_another_form_is_refused(job_setup, day):
    result = cli("job", job_setup, "--date", day)
    assert result.exit_code == 2 and "is not YYYY-MM-DD" in result.output, result.output


def test_an_upper_case_gzip_name_is_read_as_gzip(tmp_path, tiny_bundle):
    import gzip

    (tmp_path / "in").mkdir()
    with gzip.open(tmp_path / "in" / "REVIEWS.CSV.GZ", "wt") as handle:
        handle.write("id,text\n1,good film\n2,bad film\n")
    summary = score_files([tmp_path / "in" / "REVIEWS.CSV.GZ"], tmp_path / "o.parquet", tiny_bundle)
    assert summary.rows == 2 and pq.read_table(tmp_path / "o.parquet").num_rows == 2


@pytest.mark.parametrize(
    "manifest",
    [
        "[" * 100_000,
        '{"rows_done": 5, "parts": {"a": 1}, "fingerprint": {}}',
        '{"rows_done": -1, "parts": 0}',
    ],
)
def test_a_damaged_manifest_is_refused_naming_it(tiny_bundle, source, tmp_path, manifest):
    parts = tmp_path / ".o.parquet.parts"
    parts.mkdir()
    (parts / "manifest.json").write_text(manifest)
    result = cli("run", source, "-o", tmp_path / "o.parquet", "--model", tiny_bundle, "--resume")
    assert result.exit_code == 5, result.output
    assert "manifest.json: the manifest of committed parts is malformed" in result.output


def test_a_damaged_owner_marker_is_refused_naming_it(job_setup, tmp_path):
    (tmp_path / "scored").mkdir()
    (tmp_path / "scored" / "_batchscore_job.json").write_text('{"job": ["x"], "input": 1}')
    result = cli("job", job_setup, "--date", "2026-11-27")
    assert result.exit_code == 5 and "_batchscore_job.json: cannot read which job owns" in result.output


def test_a_ragged_row_that_is_not_utf8_is_one_line_naming_the_file(tmp_path, tiny_bundle):
    (tmp_path / "rag.csv").write_bytes(b"id,text\n1,good\n2,caf\xe9,bad,extra\n")
    done = batchscore(
        "run", tmp_path / "rag.csv", "-o", tmp_path / "o.parquet", "--model", tiny_bundle, "--no-progress"
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 3 and len(lines) == 1, done.stderr
    assert (
        f"{tmp_path / 'rag.csv'}: cannot read as CSV" in lines[0] and "Expected 2 columns, got 4" in lines[0]
    )


def test_a_deleted_working_directory_is_one_clear_refusal(tmp_path, tiny_bundle, source):
    gone = tmp_path / "gone"
    gone.mkdir()
    done = subprocess.run(
        f"cd {gone} && rmdir {gone} && exec {sys.executable} -m batchscore run {source} -o o.parquet "
        f"--model {tiny_bundle} --no-progress",
        shell=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and "the current directory no longer exists" in done.stderr, done.stderr


@pytest.mark.parametrize("columns", [["text", "text"], ["text", "label", "label"], ["text", "a", "a"]])
def test_a_frame_with_repeated_column_names_is_refused_naming_them(tiny_bundle, columns):
    import pandas as pd

    from batchscore.base.errors import InputError
    from batchscore.interfaces.api import load_model

    frame = pd.DataFrame([["good film"] * len(columns)], columns=columns)
    with pytest.raises(InputError, match=r"repeated column names \['"):
        load_model(tiny_bundle).score_frame(frame)


def test_a_damaged_committed_part_is_named_on_resume(tmp_path, tiny_bundle, source, monkeypatch):
    from batchscore.base.errors import OutputError
    from tests.helpers import crashed_run

    out = tmp_path / "o.parquet"
    crashed_run(monkeypatch, [source], out, tiny_bundle, "manifest updated", 2, window_rows=100)
    part = tmp_path / ".o.parquet.parts" / "part-000001.parquet-part"
    part.write_bytes(part.read_bytes()[:40])
    with pytest.raises(OutputError, match=r"part-000001\.parquet-part: committed part 1 cannot be read"):
        score_files([source], out, tiny_bundle, window_rows=100, resume=True)
    assert not out.exists() and part.exists()


def test_a_bundle_saved_into_a_folder_with_planted_links_writes_through_none(tmp_path, tiny_bundle):
    from batchscore.model.bundle import load_bundle, save_bundle

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "model"
    out.mkdir()
    for name in ("config.json", "vocab.txt", "weights.safetensors"):
        (out / name).symlink_to(victim)
        (out / f".{name}.tmp").symlink_to(victim)
    save_bundle(load_bundle(tiny_bundle), out, weights_dtype="float32")
    assert victim.read_text() == "precious\n"
    assert load_bundle(out).bundle_sha256 == load_bundle(tiny_bundle).bundle_sha256


@as_root
def test_a_checkpoint_folder_of_another_user_is_not_resumed_from(tmp_path):
    from batchscore.base.errors import OutputError
    from batchscore.training.checkpoint import Checkpoint

    folder = tmp_path / "m.checkpoint"
    folder.mkdir()
    (folder / "state.json").write_text('{"state": {}, "meta": {}, "arrays": "arrays.safetensors"}')
    os.chown(folder, OTHER_USER, OTHER_USER)
    with pytest.raises(OutputError, match="the checkpoint folder belongs to another user"):
        Checkpoint(folder).load(opt_template=None)


def test_a_corrupt_data_page_is_one_line_naming_the_file(tmp_path, tiny_bundle, reviews_table):
    from batchscore.base.errors import InputError

    path = tmp_path / "r.parquet"
    pq.write_table(reviews_table, path, compression="snappy", row_group_size=100)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64  # inside the column chunks, the footer intact
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as raised:
        score_files([path], tmp_path / "o.parquet", tiny_bundle)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert not (tmp_path / "o.parquet").exists()


@as_root
@pytest.mark.parametrize("planted", ["folder", "link"])
def test_an_output_folder_another_user_planted_in_a_shared_folder_is_refused(
    tiny_bundle, source, shared, tmp_path, planted
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sub = shared / "sub"
    if planted == "folder":
        sub.mkdir(mode=0o777)
        os.chown(sub, OTHER_USER, OTHER_USER)
    else:
        sub.symlink_to(elsewhere, target_is_directory=True)
        os.lchown(sub, OTHER_USER, OTHER_USER)
    result = cli("run", source, "-o", sub / "out.parquet", "--model", tiny_bundle)
    assert result.exit_code == 5, result.output
    assert f"{sub} is a {'folder' if planted == 'folder' else 'symbolic link'} another user" in result.output
    assert os.listdir(elsewhere) == [] and not (sub / "out.parquet").exists()
