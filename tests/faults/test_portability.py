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

from batchscore.inference.batching import ROW_QUANTUM, BucketSpec, plan_scoring_batches
from tests.helpers import ROOT


def test_scoring_batches_hold_whole_row_quanta_and_small_inputs_share_one_batch():
    spec = BucketSpec(boundaries=(8, 16), token_budget=96 * 16, max_rows=256)
    lengths = np.array([16] * 10 + [8] * 70 + [3] * 5)
    batches = plan_scoring_batches(lengths, 16, spec)
    # longest first: a full batch at width 16 would be 96 rows; all 85 fit in that ladder step
    assert [(b.width, b.rows.size, b.padded_rows) for b in batches] == [(16, 85, 96)]
    two = plan_scoring_batches(lengths, 16, spec, shards=2)  # each device's share is whole quanta
    assert [(b.width, b.rows.size, b.padded_rows) for b in two] == [(16, 85, 96)]
    assert sorted(np.concatenate([b.rows for b in batches]).tolist()) == list(range(85))
    ten = plan_scoring_batches(np.array([3, 500, 40, 9, 120, 260, 7, 77, 33, 410]), 512, BucketSpec())
    assert [(b.width, b.rows.size, b.padded_rows) for b in ten] == [(512, 10, ROW_QUANTUM)]
    for batch in batches + ten:
        assert batch.padded_rows % ROW_QUANTUM == 0 and batch.rows.size <= batch.padded_rows
    full = plan_scoring_batches(np.full(1000, 8), 16, spec)  # 192-row batches, the last one too
    assert {(b.padded_rows, b.width) for b in full} == {(spec.scoring_rows_for(8), 8)}
    assert [b.rows.size for b in full] == [192] * 5 + [40]
    tail = plan_scoring_batches(np.full(1000, 8), 16, spec, reuse_shape=False)[-1]  # cuDNN's plan
    assert (tail.rows.size, tail.padded_rows) == (40, ROW_QUANTUM)


def _qemu() -> str | None:
    return shutil.which("qemu-x86_64") if platform.machine() == "x86_64" else None


def _has_avx512() -> bool:
    from numpy._core._multiarray_umath import __cpu_features__ as features

    return bool(features.get("AVX512F"))


@pytest.mark.slow
@pytest.mark.skipif(_qemu() is None, reason="needs qemu-x86_64 on an x86-64 machine (.ci/run installs it)")
@pytest.mark.skipif(not _has_avx512(), reason="this CPU has no AVX-512: the native probe below checks AVX2")
def test_scores_ignore_batch_mates_order_and_windows_on_an_avx2_cpu():
    """The CPU model 'Haswell' has AVX2 and FMA but no AVX-512: the kernels of such a machine run.
    The code before one-shape-per-width batches failed this (97 of 600 logits moved when permuted)."""
    env = {**os.environ, "BATCHSCORE_COMPILATION_CACHE": "off", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [_qemu(), "-cpu", "Haswell", sys.executable, "-m", "tests.faults.cpu_probe", "--small"],
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
        "other_batch_sizes": 0,
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
    moved = ("permuted", "every_third", "alone", "windows_of_37", "other_batch_sizes")
    assert [result[k] for k in moved] == [0, 0, 0, 0, 0]
