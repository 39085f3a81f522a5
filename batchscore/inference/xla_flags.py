"""XLA:CPU settings applied before JAX starts its backend (imported first by the package).

Matmuls run on XLA's own kernels, with oneDNN, YNNPACK and XNNPACK turned off: those pick kernels
by CPU at run time, and on AVX2 their rounding moved with a batch's row count, which would break
the promise that a row's scores never depend on its batch-mates (docs/determinism.md).
BATCHSCORE_CPU_DEVICES=N splits the host into N devices (default: one per core, at most 8), and the
scorer splits every batch's rows between them: each device runs its share on one core with no
communication, where one device ran every small per-step operation across all cores and waited for
them at each (docs/dev/performance-log.md). A user's own XLA_FLAGS are kept; ours are only added
for flags the user did not set.
"""

from __future__ import annotations

import os

from batchscore.base.environment import read_or_default

# Matmuls go to XLA's own (Eigen) kernels: the same compiled code on every x86-64 CPU, and with one
# shape per batch width (batching.plan_batches) a row's result does not depend on its batch.
# YNNPACK and oneDNN pick kernels at run time by CPU; on AVX2 their rounding moved with the row count.
CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=", "--xla_cpu_use_xnnpack=false")
CPU_DEVICES_ENV = "BATCHSCORE_CPU_DEVICES"


def apply_default_flags() -> None:
    if read_or_default("BATCHSCORE_XLA_DEFAULTS") == "off":
        return
    current = os.environ.get("XLA_FLAGS", "")
    names = {part.split("=", 1)[0] for part in current.split()}
    devices = read_or_default(CPU_DEVICES_ENV)
    wanted = (*CPU_FLAGS, f"--xla_force_host_platform_device_count={devices}") if devices > 1 else CPU_FLAGS
    extra = [flag for flag in wanted if flag.split("=", 1)[0] not in names]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([current, *extra]).strip()
