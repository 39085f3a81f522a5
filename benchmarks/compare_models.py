"""Forward speed of two bundles on the same reviews (a new head should cost at most +10%).

    python -m benchmarks.compare_models OLD_BUNDLE NEW_BUNDLE [--rows 5000] [--repeats 3]
Both in one process, after a warm-up each, timed alternately; prints tokens/s and NEW's cost
relative to OLD (the same tokens: both bundles use the same tokenizer and truncation here).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from batchscore.inference.forward import Scorer, Truncation
from batchscore.model.bundle import load_bundle
from batchscore.text.encoding import encode
from benchmarks.common import DEFAULT_IMDB


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--imdb", type=Path, default=DEFAULT_IMDB)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    texts = pq.read_table(args.imdb, columns=["text"]).column("text").combine_chunks().slice(0, args.rows)
    runs = {}
    for name, path in (("old", args.old), ("new", args.new)):
        bundle = load_bundle(path)
        encoded = encode(texts, bundle.vocab, bundle.tokenizer)
        scorer = Scorer(bundle.model, bundle.params, Truncation(bundle.max_tokens, bundle.head_tokens))
        scorer.logits(encoded)  # compile
        tokens = int(np.minimum(encoded.n_tokens, bundle.max_tokens).sum())
        runs[name] = (scorer, encoded, tokens, [])
    for _ in range(args.repeats):
        for scorer, encoded, _, times in runs.values():
            started = time.perf_counter()
            scorer.logits(encoded)
            times.append(time.perf_counter() - started)
    rates = {name: tokens / min(times) for name, (_, _, tokens, times) in runs.items()}
    for name, path in (("old", args.old), ("new", args.new)):
        print(f"{name} {path}: {rates[name]:,.0f} tokens/s (runs {[round(t, 2) for t in runs[name][3]]})")
    print(f"new costs {rates['old'] / rates['new'] - 1:+.1%} per token vs old (target <= +10%)")


if __name__ == "__main__":
    main()
