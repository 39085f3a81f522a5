"""XLA:CPU settings applied before JAX starts its backend (imported first by the package).

oneDNN kernels for the LSTM's matmuls measured 10-20% faster forward passes on
the benchmark machine, with bit-identical results (benchmarks/README.md). A user's
own XLA_FLAGS are kept; ours are only added for flags the user did not set.
"""

from __future__ import annotations

import os

CPU_FLAGS = ("--xla_cpu_experimental_onednn_custom_call=true",)


def apply_default_flags() -> None:
    if os.environ.get("BATCHSCORE_XLA_DEFAULTS", "on").lower() == "off":
        return
    current = os.environ.get("XLA_FLAGS", "")
    names = {part.split("=", 1)[0] for part in current.split()}
    extra = [flag for flag in CPU_FLAGS if flag.split("=", 1)[0] not in names]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([current, *extra]).strip()
