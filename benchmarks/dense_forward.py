"""Forward throughput on full-width batches (no padding), default path vs the first-layer table.

    python -m benchmarks.dense_forward
The figures in benchmarks/README.md's tuning log ("dense") come from this script.
"""

from __future__ import annotations

import time

import numpy as np

from batchscore.model.bilstm import (
    ModelConfig,
    inference_params,
    table_forward_logits,
)
from batchscore.model.network import forward_logits, init_params


def main() -> None:
    config = ModelConfig(vocab_size=48_000)
    params = init_params(config, 0)
    scaled, table = inference_params(params)  # what Scorer runs the table path on
    rng = np.random.default_rng(0)
    for rows, width in ((256, 256), (512, 128)):
        ids = rng.integers(2, config.vocab_size, (rows, width)).astype(np.int32)
        lengths = np.full(rows, width, np.int32)
        runs = {
            "embedding + matmul": lambda ids=ids, lengths=lengths: forward_logits(
                config, params, ids, lengths
            ),
            "first-layer table": lambda ids=ids, lengths=lengths: table_forward_logits(
                config, scaled, table, ids, lengths
            ),
        }
        for name, run in runs.items():
            run().block_until_ready()  # compile
            started = time.perf_counter()
            for _ in range(3):
                run().block_until_ready()
            rate = 3 * rows * width / (time.perf_counter() - started)
            print(f"{rows} x {width}  {name:20s} {rate:>10,.0f} tokens/s")


if __name__ == "__main__":
    main()
