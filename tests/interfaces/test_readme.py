"""The README's examples run as written, from a copy of the repository root, with the bundled model.

```bash and ```python blocks are run, in the README's order, in one working copy (later examples
use what earlier ones wrote); ```sh and ```py blocks need things a test machine lacks (an install,
a cluster, object storage, the IMDb data or hours of training) and are only shown.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import ROOT

README = ROOT / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(kind: str) -> list[str]:
    return [body for info, body in BLOCK.findall(README.read_text()) if info == kind]


def test_first_lines_are_the_two_commands():
    first = README.read_text().split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in first.splitlines()[1:] if line.strip()]
    assert commands[0] == "pip install -c requirements.lock . && batchscore run sample_data/reviews.parquet"
    assert commands[1] == "pip install -c requirements.lock -e '.[test]' && python -m pytest"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m pytest -q" in ci  # CI runs the README's test command
    assert "-c requirements.lock" in ci  # with the versions the suite passed with


def test_the_lock_pins_every_package_the_tests_install():
    """requirements.lock holds one exact version for each package the test extras resolve to."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.split("#")[0].strip().partition("==")
            assert version and name not in pins, line
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    for needed in ("jax", "jaxlib", "flax", "click", "pandas", "pyarrow", "pytest", "ray", "pyspark", "ruff"):
        assert needed in pins, needed


def test_every_example_is_run_or_marked_as_shown_only():
    kinds = {info for info, _ in BLOCK.findall(README.read_text())}
    assert kinds <= {"bash", "python", "sh", "py", "toml", "cron", "text"}, kinds
    assert len(blocks("bash")) >= 4 and len(blocks("python")) >= 3


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The repository root as a user has it: sample data, jobs; `batchscore`/`python` on PATH."""
    work = tmp_path_factory.mktemp("repo")
    for name in ("sample_data", "jobs"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("*.scored.parquet"))
    shims = work / ".bin"
    shims.mkdir()
    programs = {"batchscore": f'"{sys.executable}" -m batchscore', "python": f'"{sys.executable}"'}
    for name, target in programs.items():
        shim = shims / name
        shim.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return work


def run_here(workdir: Path, args: list[str]) -> subprocess.CompletedProcess:
    path = f"{workdir / '.bin'}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_shell_examples_run_from_the_repository_root(workdir):
    first = README.read_text().split("```", 2)[1].splitlines()[1]
    scoring = first.split("&&", 1)[1].split("#")[0].strip()  # the install is what the suite runs in
    for script in [scoring, *blocks("bash")[1:]]:  # [0] is the two commands
        done = run_here(workdir, ["bash", "-euo", "pipefail", "-c", script])
        assert done.returncode == 0, f"{script}\n{done.stderr[-3000:]}"
    assert pq.read_table(workdir / "sample_data" / "reviews.scored.parquet").num_rows == 300
    assert (workdir / "build" / "scored_sample" / "date=2026-11-28" / "_SUCCESS").exists()
    assert (workdir / "build" / "report.html").stat().st_size > 10_000


@pytest.mark.slow
def test_python_examples_run_from_the_repository_root(workdir):
    for code in blocks("python"):
        if "import ray" in code and shutil.which("ray") is None and not _has_ray():
            continue  # the Ray example needs batchscore[ray]
        done = run_here(workdir, [sys.executable, "-c", code])
        assert done.returncode == 0, f"{code}\n{done.stderr[-3000:]}"
    scored = pq.read_table(workdir / "scored" / "reviews.parquet")
    assert scored.num_rows == pq.read_metadata(workdir / "sample_data" / "reviews.parquet").num_rows
    if _has_ray():
        ray_rows = pq.read_table(workdir / "scored-ray")
        assert ray_rows.num_rows == scored.num_rows and "prob_positive" in ray_rows.column_names


def _has_ray() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True
