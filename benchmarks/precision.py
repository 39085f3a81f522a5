"""float32 vs bfloat16 matmuls on the IMDb test split, with the shipped model: the precision policy's data.

    python -m benchmarks.precision [--rows 25000]
Prints, for each precision: forward tokens/s (after compilation), test accuracy; then the accuracy
change and the largest probability difference. bfloat16 only runs where the CPU multiplies it
natively (otherwise batchscore falls back to float32 and this prints so).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np
import pyarrow.parquet as pq

from batchscore.inference.device import choose_precision
from batchscore.inference.forward import Scorer, Truncation
from batchscore.model.bundle import load_bundle
from batchscore.model.probabilities import softmax
from batchscore.text.encoding import encode
from benchmarks.common import DEFAULT_IMDB


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--imdb", type=Path, default=DEFAULT_IMDB)
    parser.add_argument("--rows", type=int, default=25_000)
    args = parser.parse_args()
    bundle = load_bundle()
    table = pq.read_table(args.imdb, columns=["text", "label"]).slice(0, args.rows)
    labels = table.column("label").to_numpy()
    encoded = encode(table.column("text").combine_chunks(), bundle.vocab, bundle.tokenizer)
    truncation = Truncation(bundle.max_tokens, bundle.head_tokens)
    tokens = int(np.minimum(encoded.n_tokens, truncation.max_tokens).sum())
    probs = {}
    for requested in ("float32", "bfloat16"):
        precision, compute = choose_precision(requested, jax.devices()[0])
        scorer = Scorer(bundle.model, bundle.params, truncation, precision=precision)
        scorer.logits(encoded)  # compile every shape
        started = time.perf_counter()
        logits = scorer.logits(encoded)
        seconds = time.perf_counter() - started
        probs[requested] = softmax(logits, bundle.temperature)[:, 1]
        accuracy = float(np.mean((probs[requested] >= 0.5) == (labels == 1)))
        print(f"{requested:9s} [{compute}]  {tokens / seconds:>9,.0f} tokens/s  accuracy {accuracy:.4f}")
    change = np.mean((probs["bfloat16"] >= 0.5) == (labels == 1)) - np.mean(
        (probs["float32"] >= 0.5) == (labels == 1)
    )
    flips = int(np.sum((probs["bfloat16"] >= 0.5) != (probs["float32"] >= 0.5)))
    print(
        f"accuracy change {change:+.4f}; labels flipped {flips} of {len(labels)}; "
        f"max |dp| {np.max(np.abs(probs['bfloat16'] - probs['float32'])):.2e}"
    )


if __name__ == "__main__":
    main()
