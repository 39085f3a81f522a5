"""Crash and resume for real: SIGKILL a running job at several points, resume, compare row by row."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import HOOKED_RUN, HeldRun, random_review, read_scores

pytestmark = pytest.mark.slow

ROWS = 40_000
WINDOW = 1_000


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> Path:
    rng = random.Random(5)
    table = pa.table(
        {
            "id": pa.array(range(ROWS), pa.int64()),
            "text": [random_review(rng, rng.randint(1, 60)) for _ in range(ROWS)],
        }
    )
    path = tmp_path_factory.mktemp("big") / "big.parquet"
    pq.write_table(table, path, row_group_size=7_000)
    return path


def command(source: Path, output: Path, bundle: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "batchscore",
        "run",
        str(source),
        "-o",
        str(output),
        "--model",
        str(bundle),
        "--window-rows",
        str(WINDOW),
        "--id-column",
        "id",
        "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="module")
def reference(big_input, tiny_bundle, tmp_path_factory) -> pa.Table:
    output = tmp_path_factory.mktemp("ref") / "ref.parquet"
    subprocess.run(command(big_input, output, tiny_bundle), check=True, capture_output=True)
    return read_scores(output)


def committed_rows(output: Path) -> int:
    manifest = output.parent / f".{output.name}.parts" / "manifest.json"
    try:
        return json.loads(manifest.read_text())["rows_done"]
    except (OSError, ValueError):
        return -1


def started(process: subprocess.Popen) -> None:
    """Until batchscore has installed its signal handlers (bit 15 of SigCgt in /proc/PID/status): its
    first act, so the rest of start-up (imports, model load, compilation) is still ahead."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = Path(f"/proc/{process.pid}/status").read_text()
        caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        assert process.poll() is None, "batchscore ended before it installed its signal handlers"
        time.sleep(0.002)
    raise AssertionError("batchscore never installed its signal handlers")


# Where a SIGKILL lands: in start-up, or with the run held at a commit step (rows committed then;
# -1: no manifest yet, the first part is on disk but not committed).
KILL_POINTS = [
    ("start-up", 0, None),
    ("part written", 1, -1),
    ("manifest updated", 3, 3 * WINDOW),
    ("manifest updated", 21, 21 * WINDOW),
    ("output written", 1, ROWS),
    ("output renamed", 1, ROWS),
]


@pytest.mark.parametrize(("step", "nth", "committed"), KILL_POINTS)
def test_sigkill_then_resume_equals_uninterrupted_run(
    big_input, tiny_bundle, reference, tmp_path, step, nth, committed
):
    output = tmp_path / "out.parquet"
    args = command(big_input, output, tiny_bundle)
    if step == "start-up":
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started(process)
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        assert not output.exists()
    else:
        run = HeldRun(step, nth, args[3:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run.wait_until_held()
        assert run.kill() == -signal.SIGKILL  # killed mid-run, not finished
        run.close()
        if step == "output renamed":  # the kill came after the atomic rename: the file must be whole
            assert read_scores(output).equals(reference)
        else:
            assert not output.exists() and committed_rows(output) == committed
    assert not [p for p in tmp_path.iterdir() if p.name == "out.parquet" and p.stat().st_size == 0]
    resumed = subprocess.run(
        command(big_input, output, tiny_bundle, "--resume"), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    result = read_scores(output)
    assert result.num_rows == ROWS
    assert result.column("id").to_pylist() == list(range(ROWS))  # nothing lost, nothing twice, same order
    assert result.equals(reference)
    assert not (tmp_path / ".out.parquet.parts").exists()


def test_resume_skips_finished_output_and_rescores_a_changed_input(big_input, tiny_bundle, tmp_path):
    small = tmp_path / "small.parquet"
    pq.write_table(pq.read_table(big_input).slice(0, 500), small)
    output = tmp_path / "o.parquet"
    subprocess.run(command(small, output, tiny_bundle), check=True, capture_output=True)
    again = subprocess.run(command(small, output, tiny_bundle, "--resume"), capture_output=True, text=True)
    assert again.returncode == 0 and "already complete" in again.stderr
    pq.write_table(pq.read_table(big_input).slice(500, 300), small)  # same name, new content
    changed = subprocess.run(command(small, output, tiny_bundle, "--resume"), capture_output=True, text=True)
    assert changed.returncode == 0 and "already complete" not in changed.stderr
    assert pq.read_table(output).num_rows == 300


def test_partial_output_without_resume_is_refused(big_input, tiny_bundle, tmp_path):
    output = tmp_path / "out.parquet"
    first = HeldRun(
        "manifest updated", 2, command(big_input, output, tiny_bundle)[3:], stderr=subprocess.DEVNULL
    )
    first.wait_until_held()
    first.kill()
    first.close()
    again = subprocess.run(command(big_input, output, tiny_bundle), capture_output=True, text=True)
    assert again.returncode == 5
    assert "pass --resume to continue it or --overwrite" in again.stderr


def test_sigterm_stops_cleanly_and_says_how_to_resume(big_input, tiny_bundle, tmp_path, reference):
    """A SIGTERM from outside while a commit is under way: the commit completes, the run stops at the
    next window with 130 and says how to continue."""
    output = tmp_path / "out.parquet"
    run = HeldRun("manifest updated", 2, command(big_input, output, tiny_bundle)[3:],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    run.wait_until_held()
    run.process.send_signal(signal.SIGTERM)
    run.release()
    _, stderr = run.process.communicate(timeout=120)
    run.close()
    assert run.process.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    assert not output.exists() and committed_rows(output) >= 2 * WINDOW
    resumed = subprocess.run(
        command(big_input, output, tiny_bundle, "--resume"), capture_output=True, text=True
    )
    assert resumed.returncode == 0
    assert read_scores(output).equals(reference)


# A CLI run whose writer ends the process (os._exit: no cleanup at all) or signals itself at the
# Nth completion of one commit step: deterministic, unlike timing a kill from outside.
STEPS = [
    ("part written", 1),
    ("part written", 7),
    ("manifest updated", 1),
    ("manifest updated", 40),
    ("output written", 1),
    ("output renamed", 1),
    ("parts removed", 1),
]


def hooked(action: str, step: str, nth: int, cli: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", HOOKED_RUN, action, step, str(nth), *cli[3:]], capture_output=True, text=True
    )


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(("step", "nth"), STEPS)
def test_process_death_at_each_commit_step_then_resume(
    big_input, tiny_bundle, reference, tmp_path, step, nth
):
    output = tmp_path / "out.parquet"
    died = hooked("exit", step, nth, command(big_input, output, tiny_bundle))
    assert died.returncode == 77, died.stderr
    resumed = subprocess.run(
        command(big_input, output, tiny_bundle, "--resume"), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert read_scores(output).equals(reference)
    assert leftovers(tmp_path) == []  # no .parts/, no .out.parquet.tmp-PID, no lock file
    assert same_profile(output, reference)  # drift counts cover the rows of the run that died too


def same_profile(output: Path, reference: pa.Table) -> bool:
    """The output's drift profile (in its metadata) equals the uninterrupted run's."""
    key = b"batchscore.profile"
    return pq.read_schema(output).metadata[key] == reference.schema.metadata[key]


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
@pytest.mark.parametrize(
    ("step", "nth"), [("part written", 1), ("manifest updated", 20), ("output written", 1)]
)
def test_signal_at_each_commit_step_exits_130_and_resumes(
    big_input, tiny_bundle, reference, tmp_path, signame, step, nth
):
    output = tmp_path / "out.parquet"
    stopped = hooked(signame, step, nth, command(big_input, output, tiny_bundle))
    assert stopped.returncode == 130, stopped.stderr
    assert "--resume" in stopped.stderr
    for noise in ("Traceback", "Aborted", "FATAL", "terminate called"):
        assert noise not in stopped.stderr
    resumed = subprocess.run(
        command(big_input, output, tiny_bundle, "--resume"), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert read_scores(output).equals(reference)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_start_up_exits_130(big_input, tiny_bundle, tmp_path, signum):
    """From batchscore's first act on (imports, model load, compilation still ahead): a clean 130."""
    output = tmp_path / "out.parquet"
    process = subprocess.Popen(
        command(big_input, output, tiny_bundle), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    started(process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    for noise in ("Traceback", "Aborted", "FATAL", "terminate called"):
        assert noise not in stderr
    assert not output.exists()


def test_stale_temporary_output_is_removed_on_resume(big_input, tiny_bundle, tmp_path):
    small = tmp_path / "small.parquet"
    pq.write_table(pq.read_table(big_input).slice(0, 300), small)
    output = tmp_path / "o.parquet"
    (tmp_path / ".o.parquet.tmp-999999").write_bytes(b"half a file")
    done = subprocess.run(command(small, output, tiny_bundle, "--resume"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert leftovers(tmp_path) == []


def test_concurrent_runs_on_one_output(big_input, tiny_bundle, reference, tmp_path):
    output = tmp_path / "out.parquet"
    first = HeldRun("manifest updated", 3, command(big_input, output, tiny_bundle)[3:],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    first.wait_until_held()  # holds its output lock there
    second = subprocess.run(
        command(big_input, output, tiny_bundle, "--max-tokens", "10", "--resume"),
        capture_output=True,
        text=True,
    )
    assert second.returncode == 5 and f"pid {first.pid}" in second.stderr
    first.kill()  # its lock dies with it
    first.close()
    resumed = subprocess.run(
        command(big_input, output, tiny_bundle, "--resume"), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert read_scores(output).equals(reference)
