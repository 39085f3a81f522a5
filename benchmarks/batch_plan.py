"""What one compiled shape per bucket width costs: padding and forward speed, both plans, one process.

    python -m benchmarks.batch_plan                   # 3,000 and 16,384 IMDb test reviews
    python -m benchmarks.batch_plan --rows 1000 5000
    python -m benchmarks.batch_plan --max-rows 1024 512 256 128   # also: which row cap pads least

The scoring plan gives every batch of a width its full row count (scores independent of batch-mates
on every CPU, docs/determinism.md); the plan before it padded partial batches to the next power of
two and topped them up with shorter rows. Both are timed here on the same rows, alternating, with
the same kernels, so the ratio is the price of the fixed shapes alone. Prints the CPU it ran on.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow.parquet as pq

import batchscore.scoring as scoring
from batchscore.batching import BucketSpec, plan_batches
from batchscore.bundle import load_bundle
from batchscore.encoding import encode
from batchscore.runtime import cpu_summary
from benchmarks.common import DEFAULT_IMDB


def padded_per_real(
    lengths: np.ndarray, max_tokens: int, fixed: bool, spec: BucketSpec | None = None
) -> float:
    plan = plan_batches(lengths, max_tokens, spec or BucketSpec(), one_shape_per_width=fixed)
    return sum(b.padded_rows * b.width for b in plan) / max(1, int(np.minimum(lengths, max_tokens).sum()))


def forward_seconds(scorer: scoring.Scorer, encoded, fixed: bool, repeats: int) -> float:
    """Best of `repeats` (after one warm-up) with the scorer planning batches one way or the other."""
    real = scoring.plan_batches

    def planned(lengths, max_tokens, spec, rng=None, **_):
        return real(lengths, max_tokens, spec, rng, one_shape_per_width=fixed)

    scoring.plan_batches = planned
    try:
        scorer.logits(encoded)
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            scorer.logits(encoded)
            best = min(best, time.perf_counter() - started)
        return best
    finally:
        scoring.plan_batches = real


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--imdb", default=str(DEFAULT_IMDB))
    parser.add_argument("--rows", type=int, nargs="+", default=[3000, 16384])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--max-rows", type=int, nargs="*", default=[], help="row caps to compare (scoring plan)"
    )
    args = parser.parse_args()
    bundle = load_bundle()
    table = pq.read_table(args.imdb, columns=["text"])
    order = np.random.default_rng(0).permutation(table.num_rows)
    truncation = scoring.Truncation(bundle.max_tokens, bundle.head_tokens)
    scorer = scoring.Scorer(bundle.model, bundle.params, truncation)
    print(f"CPU: {cpu_summary()}")
    print("rows    padded/real (powers of two -> one shape)   reviews/s (powers of two -> one shape)   ratio")
    for rows in args.rows:
        texts = table.take(order[:rows]).column("text").combine_chunks()
        encoded = encode(texts, bundle.vocab, bundle.tokenizer)
        old_pad, new_pad = (padded_per_real(encoded.n_tokens, bundle.max_tokens, f) for f in (False, True))
        old_s, new_s = (forward_seconds(scorer, encoded, f, args.repeats) for f in (False, True))
        print(
            f"{rows:>6,}  {old_pad:.2f} -> {new_pad:.2f}{'':29s}{rows / old_s:,.0f} -> {rows / new_s:,.0f}"
            f"{'':22s}{old_s / new_s:.2f}x"
        )
        for cap in args.max_rows:
            spec = BucketSpec(max_rows=cap)
            capped = scoring.Scorer(bundle.model, bundle.params, truncation, spec)
            seconds = forward_seconds(capped, encoded, True, args.repeats)
            padding = padded_per_real(encoded.n_tokens, bundle.max_tokens, True, spec)
            print(
                f"{rows:>6,}  --max-batch-rows {cap}: {rows / seconds:,.0f} reviews/s, "
                f"padded/real {padding:.2f}"
            )


if __name__ == "__main__":
    main()
