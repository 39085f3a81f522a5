"""What the scoring plan pads and how fast it runs, per length mix, input size, bucket widths and
row cap, in one process.

    python -m benchmarks.batch_plan                   # IMDb and short mix, 3,000 and 16,384 rows
    python -m benchmarks.batch_plan --mix short --rows 20000 --max-rows 256 768 1536
    python -m benchmarks.batch_plan --widths 32,64,96,128,160,192,256,320,400,512 default

Padding is the token steps the plan computes (every batch's rows x its longest row: its loop's trip
count) over real tokens after truncation. The first width set and cap listed are the reference for
the ratios of an input. Prints the CPU it ran on.
"""

from __future__ import annotations

import argparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import batchscore.inference.forward as scoring
from batchscore.inference.batching import DEFAULT_BOUNDARIES, BucketSpec, plan_scoring_batches
from batchscore.inference.device import cpu_summary
from batchscore.model.bundle import load_bundle
from batchscore.text.encoding import encode
from benchmarks.common import DEFAULT_IMDB, timed
from benchmarks.short_mix import short_reviews


def padded_per_real(lengths: np.ndarray, max_tokens: int, spec: BucketSpec, shards: int) -> float:
    clipped = np.maximum(np.minimum(lengths, max_tokens), 1)
    plan = plan_scoring_batches(lengths, max_tokens, spec, shards)
    computed = sum(b.padded_rows * int(clipped[b.rows].max()) for b in plan)
    return computed / max(1, int(np.minimum(lengths, max_tokens).sum()))


def parse_widths(text: str) -> tuple[int, ...]:
    return DEFAULT_BOUNDARIES if text == "default" else tuple(int(w) for w in text.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--imdb", default=str(DEFAULT_IMDB))
    parser.add_argument("--mix", nargs="+", choices=["imdb", "short"], default=["imdb", "short"])
    parser.add_argument("--rows", type=int, nargs="+", default=[3000, 16384])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--max-rows", type=int, nargs="+", default=[256, 768, 1536], help="row caps to compare"
    )
    parser.add_argument(
        "--widths", nargs="+", default=["default"], help="bucket boundary sets, comma-separated, or 'default'"
    )
    args = parser.parse_args()
    bundle = load_bundle()
    truncation = scoring.Truncation(bundle.max_tokens, bundle.head_tokens)
    print(f"CPU: {cpu_summary()}")
    for mix in args.mix:
        if mix == "imdb":
            table = pq.read_table(args.imdb, columns=["text"])
            order = np.random.default_rng(0).permutation(table.num_rows)
            texts = table.column("text").combine_chunks().take(order[: max(args.rows)])
        else:
            texts = pa.array(short_reviews(max(args.rows), seed=1))
        for rows in args.rows:
            encoded = encode(texts.slice(0, rows), bundle.vocab, bundle.tokenizer)
            mean = float(np.minimum(encoded.n_tokens, bundle.max_tokens).mean())
            reference = None
            for widths in args.widths:
                for cap in args.max_rows:
                    spec = BucketSpec(boundaries=parse_widths(widths), max_rows=cap)
                    scorer = scoring.Scorer(bundle.model, bundle.params, truncation, spec)
                    scorer.logits(encoded)  # compile
                    seconds, _ = timed(lambda s=scorer, e=encoded: s.logits(e), repeat=args.repeats)
                    reference = reference or seconds
                    padding = padded_per_real(encoded.n_tokens, bundle.max_tokens, spec, scorer.shards)
                    batches = len(
                        plan_scoring_batches(encoded.n_tokens, bundle.max_tokens, spec, scorer.shards)
                    )
                    print(
                        f"{mix:>5} {rows:>6,} rows (mean {mean:.0f} tokens), widths {widths[:24]:<24} "
                        f"max rows {cap:>5}: {rows / seconds:>7,.0f} reviews/s (x{reference / seconds:.2f}), "
                        f"padded/real {padding:.2f}, {batches} batches",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
