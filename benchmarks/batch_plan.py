"""What the scoring plan pads and how fast it runs, per input size and row cap, in one process.

    python -m benchmarks.batch_plan                   # 3,000 and 16,384 IMDb test reviews
    python -m benchmarks.batch_plan --rows 1000 5000 --max-rows 1536 768 384 192

Padding is padded tokens (rows x width of every batch) over real tokens after truncation. The
first cap listed is the reference for the ratios. Prints the CPU it ran on.
"""

from __future__ import annotations

import argparse

import numpy as np
import pyarrow.parquet as pq

import batchscore.scoring as scoring
from batchscore.batching import BucketSpec, plan_scoring_batches
from batchscore.bundle import load_bundle
from batchscore.encoding import encode
from batchscore.runtime import cpu_summary
from benchmarks.common import DEFAULT_IMDB, timed


def padded_per_real(lengths: np.ndarray, max_tokens: int, spec: BucketSpec) -> float:
    plan = plan_scoring_batches(lengths, max_tokens, spec)
    return sum(b.padded_rows * b.width for b in plan) / max(1, int(np.minimum(lengths, max_tokens).sum()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--imdb", default=str(DEFAULT_IMDB))
    parser.add_argument("--rows", type=int, nargs="+", default=[3000, 16384])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--max-rows", type=int, nargs="+", default=[256, 512, 1024], help="row caps to compare"
    )
    args = parser.parse_args()
    bundle = load_bundle()
    table = pq.read_table(args.imdb, columns=["text"])
    order = np.random.default_rng(0).permutation(table.num_rows)
    truncation = scoring.Truncation(bundle.max_tokens, bundle.head_tokens)
    print(f"CPU: {cpu_summary()}")
    for rows in args.rows:
        encoded = encode(
            table.take(order[:rows]).column("text").combine_chunks(), bundle.vocab, bundle.tokenizer
        )
        reference = None
        for cap in args.max_rows:
            spec = BucketSpec(max_rows=cap)
            scorer = scoring.Scorer(bundle.model, bundle.params, truncation, spec)
            scorer.logits(encoded)  # compile
            seconds, _ = timed(lambda s=scorer, e=encoded: s.logits(e), repeat=args.repeats)
            reference = reference or seconds
            padding = padded_per_real(encoded.n_tokens, bundle.max_tokens, spec)
            print(
                f"{rows:>6,} rows, --max-batch-rows {cap:>5}: {rows / seconds:>7,.0f} reviews/s "
                f"(x{reference / seconds:.2f}), padded/real {padding:.2f}"
            )


if __name__ == "__main__":
    main()
