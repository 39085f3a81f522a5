"""JAX runtime setup: which device scores, and the persistent compilation cache.

Compiling the bucketed forward pass takes seconds per shape; nightly jobs run the
same shapes every night, so compiled programs are kept on disk and reused.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

from batchscore.errors import BatchscoreError

CACHE_ENV = "BATCHSCORE_COMPILATION_CACHE"  # a directory, or "off"
_cache_ready = False


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "batchscore" / "jax"


def enable_compilation_cache() -> Path | None:
    """Turn on JAX's persistent cache once per process (unless BATCHSCORE_COMPILATION_CACHE=off)."""
    global _cache_ready
    setting = os.environ.get(CACHE_ENV, "")
    if setting.lower() == "off":
        return None
    directory = Path(setting) if setting else default_cache_dir()
    if not _cache_ready:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None  # a read-only home must not stop a nightly job
        jax.config.update("jax_compilation_cache_dir", str(directory))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        _cache_ready = True
    return directory


def pick_device(name: str) -> jax.Device:
    if name == "cpu":
        return jax.devices("cpu")[0]
    if name == "gpu":
        try:
            return jax.devices("gpu")[0]
        except RuntimeError as err:
            raise BatchscoreError(
                "--device gpu: JAX sees no GPU (install batchscore[gpu] on a CUDA machine)"
            ) from err
    if name == "auto":
        return jax.devices()[0]
    raise BatchscoreError(f"--device must be auto, cpu or gpu, not {name!r}")
