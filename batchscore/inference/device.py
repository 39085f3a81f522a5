"""JAX runtime setup: which device scores, and the persistent compilation cache.

Compiling the bucketed forward pass takes seconds per shape; nightly jobs run the
same shapes every night, so compiled programs are kept on disk and reused.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from pathlib import Path

import jax

from batchscore.base import environment, settings
from batchscore.base.errors import NoGpu, OutOfMemory, UsageError
from batchscore.io.console import STDERR, printable
from batchscore.io.safe_files import private_path_problem

CACHE_ENV = "BATCHSCORE_COMPILATION_CACHE"  # a directory, or "off"
_cache_ready = False
_cache_refused = False  # a folder that was not private: off for the rest of the process


def default_cache_dir() -> Path:
    base = environment.read("XDG_CACHE_HOME")
    if not os.path.isabs(base):  # unset, or relative (which the XDG specification says to ignore)
        base = str(Path.home() / ".cache")
    return Path(base) / "batchscore" / "jax"


def enable_compilation_cache() -> Path | None:
    """Turn on JAX's persistent cache once per process (unless BATCHSCORE_COMPILATION_CACHE=off).

    A cache entry is native code that every later run executes, so the folder must be private: the
    running user's own, writable by nobody else, with no folder above it another user could swap.
    Any other folder turns the cache off for the run, with one warning line (it compiles instead).
    """
    global _cache_ready, _cache_refused
    setting = environment.read(CACHE_ENV)
    if setting == "off" or _cache_refused:
        return None
    directory = Path(setting) if setting else default_cache_dir()
    if not _cache_ready:
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            problem = private_path_problem(str(directory))
        except OSError:
            return None  # a read-only home must not stop a nightly job
        if problem:  # said once: the decision holds for the rest of the process
            STDERR.write(f"batchscore: warning: compilation cache not used ({printable(problem)}); "
                         "compiling instead\n")  # fmt: skip
            _cache_refused = True
            return None
        jax.config.update("jax_compilation_cache_dir", str(directory))
        # every program: the 0.13 s compile of inference_params fell under JAX's 0.2 s default
        # only on some runs, so a warm start-up paid it or not by chance
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        _cache_ready = True
    return directory


DEVICES = settings.DEVICES


def pick_devices(name: str) -> list[jax.Device]:
    """The devices batches go to: one GPU, or every host CPU device (one unless xla_flags splits it)."""
    if name == "cpu":
        return jax.devices("cpu")
    if name == "gpu":
        try:
            return jax.devices("gpu")[:1]
        except RuntimeError as err:
            raise NoGpu(  # asking for what the machine does not have: a usage mistake, exit 2
                "--device gpu: JAX sees no GPU (install batchscore[gpu] on a CUDA machine, or use "
                "--device cpu)"
            ) from err
    if name == "auto":
        first = jax.devices()[0]
        return jax.devices("cpu") if first.platform == "cpu" else [first]
    raise UsageError(f"--device must be auto, cpu or gpu, not {name!r}")


def pick_device(name: str) -> jax.Device:
    return pick_devices(name)[0]


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them (x86 "flags", Arm "Features"); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def cpu_features(flags: set[str] | None = None) -> str:
    """The vector features that decide which kernels and roundings a CPU gets, e.g. "AVX-512, BF16"."""
    flags = cpu_flags() if flags is None else flags
    if "avx512f" in flags:
        isa = "AVX-512"
    elif "avx2" in flags:
        isa = "AVX2"
    elif {"asimd", "neon"} & flags:
        isa = "SVE" if "sve" in flags else "NEON"
    else:
        isa = "no AVX2"
    return f"{isa}{', BF16' if has_native_bf16(flags) else ''}"


def has_native_bf16(flags: set[str]) -> bool:
    """AVX512_BF16 or AMX on x86, BF16 on Arm: where bfloat16 matmuls are not emulated."""
    return bool({"avx512_bf16", "amx_bf16", "bf16"} & flags)


def cpu_summary() -> str:
    """Model name, core count and features, for test and benchmark output."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "CPU part"):
                    name = value.strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores, {cpu_features()}"


def recurrence_path(device: jax.Device) -> str:
    """ "cudnn" on a GPU (one fused kernel for the whole recurrence), else "scan" (XLA loop, CPU).
    BATCHSCORE_GPU_RNN=scan keeps the scan on a GPU, to compare the two."""
    if device.platform == "gpu" and environment.read("BATCHSCORE_GPU_RNN") != "scan":
        return "cudnn"
    return "scan"


def choose_precision(requested: str, device: jax.Device) -> tuple[str, str]:
    """The matmul precision to run with, and one line for the run summary saying which path ran.

    bfloat16 pays only where the hardware multiplies bfloat16 natively (AVX512_BF16 or AMX on x86,
    BF16 on Arm, any recent GPU); elsewhere it would be emulated and slower, so float32 runs instead.
    """
    if device.platform != "cpu":
        # cuDNN's LSTM has no bfloat16: a reduced-precision request means TF32 matmuls there
        matmuls = "float32 matmuls (TF32 off)" if requested == "float32" else "TF32 matmuls"
        path = "cuDNN LSTM" if recurrence_path(device) == "cudnn" else "scan LSTM"
        return requested, f"{device.platform} ({device.device_kind}), {path}, {matmuls}"
    return cpu_precision(requested, cpu_flags())


def cpu_precision(requested: str, flags: set[str]) -> tuple[str, str]:
    """choose_precision for a CPU with these feature flags (no JAX device needed: Ray's driver plans
    its CPU actors' precision with it)."""
    features = cpu_features(flags)
    if requested == "bfloat16" and not has_native_bf16(flags):
        return "float32", f"cpu ({features}), float32 matmuls (bfloat16 asked: no native BF16 on this CPU)"
    return requested, f"cpu ({features}), {requested} matmuls"


@contextlib.contextmanager
def out_of_memory_as_error() -> Iterator[None]:
    """XLA's out-of-memory status (it has no exception class of its own) as OutOfMemory, saying which
    settings make batches smaller; any other runtime error passes unchanged."""
    try:
        yield
    except jax.errors.JaxRuntimeError as err:
        if "RESOURCE_EXHAUSTED" not in str(err):
            raise
        raise OutOfMemory(
            f"out of memory ({str(err).splitlines()[0][:160]}); lower --batch-tokens or "
            "--max-batch-rows, use a smaller --max-tokens (a batch holds at least 48 rows of the "
            "widest length), or give the process more memory"
        ) from err
