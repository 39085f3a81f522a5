"""Scores that do not depend on the batch plan on every CPU, checked on this one and on an emulated
AVX2-only x86-64 (qemu), whatever CPU runs the suite."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

from batchscore.batching import BucketSpec, plan_batches
from tests.helpers import ROOT


def test_scoring_plan_gives_each_width_one_shape_and_each_row_its_own_bucket():
    spec = BucketSpec(boundaries=(8, 16), token_budget=64 * 16, max_rows=128)
    lengths = np.array([16] * 10 + [8] * 70 + [3] * 5)
    batches = plan_batches(lengths, 16, spec, one_shape_per_width=True)
    assert [(b.width, b.rows.size, b.padded_rows) for b in batches] == [(16, 10, 64), (8, 75, 128)]
    alone = plan_batches(lengths[10:], 16, spec, one_shape_per_width=True)  # other window-mates
    assert [(b.width, b.padded_rows) for b in alone] == [(8, 128)]
    for batch in batches:
        assert np.all(lengths[batch.rows] <= batch.width)
        assert batch.padded_rows == spec.rows_for(batch.width)


def _qemu() -> str | None:
    return shutil.which("qemu-x86_64") if platform.machine() == "x86_64" else None


@pytest.mark.slow
@pytest.mark.skipif(_qemu() is None, reason="needs qemu-x86_64 on an x86-64 machine (.ci/run installs it)")
def test_scores_ignore_batch_mates_order_and_windows_on_an_avx2_cpu():
    """The CPU model 'Haswell' has AVX2 and FMA but no AVX-512: the kernels of such a machine run.
    The code before one-shape-per-width batches failed this (97 of 600 logits moved when permuted)."""
    env = {**os.environ, "BATCHSCORE_COMPILATION_CACHE": "off", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [_qemu(), "-cpu", "Haswell", sys.executable, "-m", "tests.faults.cpu_probe"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["avx2"] and not result["avx512f"], result  # the emulated CPU is what it claims
    assert {k: v for k, v in result.items() if k not in ("avx2", "avx512f")} == {
        "permuted": 0,
        "every_third": 0,
        "alone": 0,
        "windows_of_37": 0,
    }


def test_the_probe_passes_on_this_cpu_too():
    done = subprocess.run(
        [sys.executable, "-m", "tests.faults.cpu_probe"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert [result[k] for k in ("permuted", "every_third", "alone", "windows_of_37")] == [0, 0, 0, 0]
