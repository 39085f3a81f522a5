"""What each batch shape costs a fresh process: the first pass over a mix against later passes, and
one shape's first call split into tracing and lowering (Python, under the GIL) and loading the
compiled program from the persistent compilation cache.

    python -m benchmarks.shape_cost                 # the generated short mix, 20,000 reviews
    python -m benchmarks.shape_cost --imdb 5000     # 5,000 IMDb test reviews instead
Run it twice: the first run fills the compilation cache; the second shows the warm-cache costs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import pyarrow.parquet as pq

from batchscore.inference.batching import BucketSpec, plan_scoring_batches
from batchscore.inference.compute import local_plan, truncation_for
from batchscore.inference.forward import Scorer
from batchscore.model.bundle import load_bundle
from batchscore.text.encoding import encode
from benchmarks.common import DEFAULT_IMDB
from benchmarks.short_mix import write_short_parquet


def texts_of(args: argparse.Namespace):
    if args.imdb:
        table = pq.read_table(DEFAULT_IMDB, columns=["text"])
        return (
            table.column("text")
            .combine_chunks()
            .take(np.random.default_rng(0).permutation(table.num_rows)[: args.imdb])
        )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "short.parquet"
        write_short_parquet(path, args.short)
        return pq.read_table(path).column("text").combine_chunks()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--imdb", type=int, default=0, help="IMDb test reviews (default: the short mix)")
    parser.add_argument("--short", type=int, default=20_000, help="generated short reviews")
    args = parser.parse_args()
    bundle = load_bundle()
    truncation = truncation_for(bundle, None)
    plan = local_plan("auto", "float32", BucketSpec())
    encoded = encode(texts_of(args), bundle.vocab, bundle.tokenizer)
    keep = np.flatnonzero(encoded.n_tokens > 0)
    scorer = Scorer(bundle.model, bundle.params, truncation, plan.buckets, list(plan.devices), plan.precision)
    batches = plan_scoring_batches(encoded.n_tokens[keep], truncation.max_tokens, plan.buckets, scorer.shards)
    shapes = sorted({(batch.padded_rows, batch.width) for batch in batches})
    passes = []
    for _ in range(3):
        started = time.perf_counter()
        scorer.logits(encoded, keep)
        passes.append(time.perf_counter() - started)
    extra = passes[0] - min(passes[1:])
    print(f"{len(keep):,} rows, {len(batches)} batches, {len(shapes)} shapes")
    print(f"passes {', '.join(f'{s:.2f} s' for s in passes)}: the first costs {extra:.2f} s more, "
          f"{extra / len(shapes) * 1000:.0f} ms a shape")  # fmt: skip
    for rows, width in ((rows * 2, width) for rows, width in shapes[:3]):  # shapes this process has not seen
        ids = jax.ShapeDtypeStruct((rows, width), np.int32, sharding=scorer.rows_on)
        kept = jax.ShapeDtypeStruct((rows,), np.int32, sharding=scorer.rows_on)
        started = time.perf_counter()
        lowered = scorer.forward.lower(scorer.weights, ids, kept)
        middle = time.perf_counter()
        lowered.compile()
        print(f"shape {rows} x {width}: trace and lower {(middle - started) * 1000:.0f} ms, "
              f"compile or load from the cache {(time.perf_counter() - middle) * 1000:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
