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

from tests.conftest import random_review

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
        "batchscore.cli",
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
    return pq.read_table(output)


def committed_rows(output: Path) -> int:
    manifest = output.parent / f".{output.name}.parts" / "manifest.json"
    try:
        return json.loads(manifest.read_text())["rows_done"]
    except (OSError, ValueError):
        return -1


def kill_when(process: subprocess.Popen, output: Path, rows: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while committed_rows(output) < rows and process.poll() is None:
        assert time.monotonic() < deadline, "the job never reached the kill point"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.parametrize("kill_at_rows", [-1, 0, 3_000, 21_000, ROWS])
def test_sigkill_then_resume_equals_uninterrupted_run(
    big_input, tiny_bundle, reference, tmp_path, kill_at_rows
):
    output = tmp_path / "out.parquet"
    process = subprocess.Popen(
        command(big_input, output, tiny_bundle), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if kill_at_rows < 0:  # while still starting up
        time.sleep(0.3)
        process.send_signal(signal.SIGKILL)
        process.wait()
    else:
        kill_when(process, output, kill_at_rows)
    assert process.returncode == -signal.SIGKILL  # it really was killed mid-run
    if 0 < kill_at_rows < ROWS:
        assert not output.exists() and 0 < committed_rows(output) < ROWS
    assert not [p for p in tmp_path.iterdir() if p.name == "out.parquet" and p.stat().st_size == 0]
    if output.exists():  # the kill came after the atomic rename: the file must be whole
        assert pq.read_table(output).equals(reference)
    resumed = subprocess.run(
        command(big_input, output, tiny_bundle, "--resume"), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    result = pq.read_table(output)
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
    process = subprocess.Popen(
        command(big_input, output, tiny_bundle), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    kill_when(process, output, 2_000)
    again = subprocess.run(command(big_input, output, tiny_bundle), capture_output=True, text=True)
    assert again.returncode == 5
    assert "pass --resume to continue it or --overwrite" in again.stderr


def test_sigterm_stops_cleanly_and_says_how_to_resume(big_input, tiny_bundle, tmp_path, reference):
    output = tmp_path / "out.parquet"
    process = subprocess.Popen(
        command(big_input, output, tiny_bundle), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    while committed_rows(output) < 2_000 and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    assert not output.exists()
    resumed = subprocess.run(
        command(big_input, output, tiny_bundle, "--resume"), capture_output=True, text=True
    )
    assert resumed.returncode == 0
    assert pq.read_table(output).equals(reference)
