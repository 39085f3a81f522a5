"""Forward throughput on full-width batches (no padding): the scoring pass on every host device
(each batch's rows split between them, as `batchscore run` does) against one device.

    python -m benchmarks.dense_forward
"""

from __future__ import annotations

import time

import jax
import numpy as np

from batchscore.inference.forward import Scorer, Truncation
from batchscore.model.bilstm import ModelConfig
from batchscore.model.network import init_params
from batchscore.text.encoding import Encoded


def main() -> None:
    config = ModelConfig(vocab_size=60_000, pooling=("max", "mean"))
    params = init_params(config, 0)
    rng = np.random.default_rng(0)
    devices = jax.devices()
    scorers = {f"{len(devices)} device(s)": Scorer(config, params, Truncation(512, 128), device=devices)}
    if len(devices) > 1:
        scorers["1 device"] = Scorer(config, params, Truncation(512, 128), device=devices[:1])
    for rows, width in ((384, 256), (384, 64), (768, 16)):
        lengths = np.full(rows, width)
        encoded = Encoded(rng.integers(2, config.vocab_size, rows * width).astype(np.int32),
                          np.concatenate([[0], np.cumsum(lengths)]))  # fmt: skip
        for name, scorer in scorers.items():
            scorer.logits(encoded)  # compile
            started = time.perf_counter()
            for _ in range(3):
                scorer.logits(encoded)
            rate = 3 * rows * width / (time.perf_counter() - started)
            print(f"{rows} x {width}  {name:12s} {rate:>10,.0f} tokens/s")


if __name__ == "__main__":
    main()
