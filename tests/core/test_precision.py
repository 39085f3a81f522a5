"""The precision policy: float32 by default, bfloat16 only on request and only where the CPU has it."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np
import pyarrow.parquet as pq
import pytest

import batchscore.inference.device as runtime
from batchscore.base.errors import UsageError
from batchscore.pipeline.options import RunOptions
from tests.helpers import read_scores, score_files


def test_unknown_precision_is_a_usage_error():
    with pytest.raises(UsageError, match="precision"):
        RunOptions(precision="int8")


def test_bfloat16_falls_back_to_float32_without_native_support(monkeypatch):
    cpu = jax.devices("cpu")[0]
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "fma"})
    assert runtime.choose_precision("bfloat16", cpu) == (
        "float32",
        "cpu (AVX2), float32 matmuls (bfloat16 asked: no native BF16 on this CPU)",
    )
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert runtime.choose_precision("bfloat16", cpu)[0] == "bfloat16"
    assert runtime.choose_precision("float32", cpu) == ("float32", "cpu (AVX-512, BF16), float32 matmuls")


def test_bfloat16_scores_are_close_deterministic_and_said(tmp_path, tiny_bundle, reviews_table):
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    exact = score_files([tmp_path / "r.parquet"], tmp_path / "f32.parquet", tiny_bundle)
    fast = score_files([tmp_path / "r.parquet"], tmp_path / "bf16.parquet", tiny_bundle, precision="bfloat16")
    score_files(
        [tmp_path / "r.parquet"],
        tmp_path / "bf16-w.parquet",
        tiny_bundle,
        precision="bfloat16",
        window_rows=37,
    )
    assert "float32 matmuls" in exact.compute and "bfloat16" not in exact.compute
    assert "bfloat16" in fast.compute or "no native BF16" in fast.compute  # which path ran is said
    p32, p16, p16w = (
        pq.read_table(tmp_path / name).column("prob_positive").to_numpy()
        for name in ("f32.parquet", "bf16.parquet", "bf16-w.parquet")
    )
    np.testing.assert_allclose(p16, p32, atol=2e-2)
    np.testing.assert_array_equal(p16, p16w)  # still independent of windows and batch-mates


@pytest.mark.slow
def test_one_host_device_gives_the_bits_of_several(tmp_path, tiny_bundle, reviews_table):
    """By default every batch's rows are split between the host devices (one per core); a process
    with one device (BATCHSCORE_CPU_DEVICES=1) scores every row to the same bits."""
    if len(jax.devices()) < 2:
        pytest.skip("one core here: the default is already one host device")
    pq.write_table(reviews_table, tmp_path / "r.parquet")
    many = score_files([tmp_path / "r.parquet"], tmp_path / "many.parquet", tiny_bundle, window_rows=1000)
    assert f"{len(jax.devices())} host devices" in many.compute
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {"BATCHSCORE_CPU_DEVICES": "1"}
    command = [sys.executable, "-m", "batchscore", "run", str(tmp_path / "r.parquet")]
    done = subprocess.run(
        [
            *command,
            "-o",
            str(tmp_path / "one.parquet"),
            "--model",
            str(tiny_bundle),
            "--max-batch-rows",
            "64",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "host devices" not in done.stderr
    assert read_scores(tmp_path / "one.parquet").equals(read_scores(tmp_path / "many.parquet"))


def test_running_out_of_memory_is_a_usage_error_that_names_the_settings():
    """XLA reports out of memory only as a status in its message: the run turns it into OutOfMemory
    (exit 2) with the settings that make batches smaller, and lets other runtime errors through."""
    import jax.numpy as jnp

    from batchscore.base.errors import ExitCode, OutOfMemory
    from batchscore.inference.device import out_of_memory_as_error

    with pytest.raises(OutOfMemory) as caught, out_of_memory_as_error():
        jnp.zeros((1 << 42,), jnp.float32).block_until_ready()  # 16 TiB
    assert caught.value.exit_code == ExitCode.USAGE == 2
    assert "out of memory" in str(caught.value) and "--batch-tokens" in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(TypeError), out_of_memory_as_error():
        jnp.zeros((2, 2)) @ jnp.zeros((3, 3))
