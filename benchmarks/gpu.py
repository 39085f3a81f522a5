"""The prepared GPU benchmark: one run, one machine, every figure against its reference.

    python -m benchmarks.gpu --imdb build/test.parquet [--reviews 200000] [--json OUT.json]
Prints, in one process on one GPU:
1. forward tokens/s over the IMDb test reviews: the scan path, the cuDNN path (float32, TF32 off)
   and the cuDNN path with TF32 allowed (--precision bfloat16 on a GPU), PyTorch nn.LSTM on CUDA
   (packed, batches of 2,048); max |dp| of each against the cuDNN float32 path, and of the cuDNN
   float32 path against the CPU path (first 2,000 rows; target 1e-5);
2. end to end: `batchscore run --device gpu` on REVIEWS reviews (the test split repeated), start-up
   included, against the PyTorch scorer (benchmarks/torch_scorer.py, cuda) on the same file.
Runs in a few minutes on an H200. `--cpu-smoke` runs the same code on a CPU with small sizes (the
cuDNN rows are skipped), so the script is checked before a GPU is lent. The IMDb file does not travel
to a device machine by itself: copy ../shared/data/imdb/test.parquet to build/ (ignored by git) and
carry it (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from batchscore.inference.batching import GPU_BUCKETS
from batchscore.inference.forward import Scorer, Truncation
from batchscore.model.bundle import load_bundle
from batchscore.model.probabilities import softmax
from batchscore.text.encoding import encode
from benchmarks.common import run_command


def timed_logits(scorer: Scorer, encoded, repeats: int = 2) -> tuple[float, np.ndarray]:
    scorer.logits(encoded)  # compile every bucket shape first
    best, logits = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        logits = scorer.logits(encoded)  # returns host arrays: the device work is finished
        best = min(best, time.perf_counter() - started)
    return best, logits


def scorer_for(bundle, path: str, device, precision: str = "float32") -> Scorer:
    os.environ["BATCHSCORE_GPU_RNN"] = path  # read when the Scorer is built
    truncation = Truncation(bundle.max_tokens, bundle.head_tokens)
    spec = GPU_BUCKETS if device.platform == "gpu" else None
    return Scorer(bundle.model, bundle.params, truncation, spec, device, precision)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--imdb", type=Path, default=Path("build/test.parquet"))
    parser.add_argument("--reviews", type=int, default=200_000)
    parser.add_argument("--forward-rows", type=int, default=25_000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--cpu-smoke", action="store_true", help="Small sizes on a CPU, cuDNN skipped.")
    args = parser.parse_args()
    gpu = next(iter(d for d in jax.devices() if d.platform == "gpu"), None)
    if gpu is None and not args.cpu_smoke:
        sys.exit("benchmarks.gpu: JAX sees no GPU (use --cpu-smoke to check the script on a CPU)")
    device = gpu or jax.devices("cpu")[0]
    if args.cpu_smoke:
        args.reviews, args.forward_rows = min(args.reviews, 2_000), min(args.forward_rows, 500)
    results: dict = {"device": f"{device.platform} {device.device_kind}", "jax": jax.__version__}
    bundle = load_bundle()
    texts = pq.read_table(args.imdb, columns=["text"]).column("text").combine_chunks()
    encoded = encode(texts.slice(0, args.forward_rows), bundle.vocab, bundle.tokenizer)
    tokens = int(np.minimum(encoded.n_tokens, bundle.max_tokens).sum())

    forward = {}
    paths = [("scan", "scan", "float32")]
    if gpu is not None:
        paths = [("cudnn", "cudnn", "float32"), ("cudnn_tf32", "cudnn", "bfloat16"), *paths]
    probs = {}
    for name, path, precision in paths:
        seconds, logits = timed_logits(scorer_for(bundle, path, device, precision), encoded)
        forward[name] = tokens / seconds
        probs[name] = softmax(logits, bundle.temperature)[:, 1]
    exact = probs["cudnn"] if gpu is not None else probs["scan"]
    deltas = {name: float(np.abs(p - exact).max()) for name, p in probs.items()}
    cpu_rows = min(2_000, args.forward_rows)
    cpu_scorer = scorer_for(bundle, "scan", jax.devices("cpu")[0])
    cpu_probs = softmax(cpu_scorer.logits(encode(texts.slice(0, cpu_rows), bundle.vocab, bundle.tokenizer)),
                        bundle.temperature)[:, 1]  # fmt: skip
    deltas["vs_cpu_path"] = float(np.abs(exact[:cpu_rows] - cpu_probs).max())

    try:
        import torch

        from benchmarks.torch_scorer import from_bundle, torch_logits

        torch_device = "cuda" if gpu is not None and torch.cuda.is_available() else "cpu"
        model = from_bundle(bundle).to(torch_device)
        rows = [encoded.ids[encoded.offsets[i] : encoded.offsets[i + 1]][: bundle.max_tokens]
                for i in range(len(encoded))]  # fmt: skip
        batch = 2048 if torch_device == "cuda" else 256
        torch_logits(model, rows[:batch], batch, torch_device)
        started = time.perf_counter()
        torch_logits(model, rows, batch, torch_device)
        forward[f"pytorch_{torch_device}"] = tokens / (time.perf_counter() - started)
    except ImportError:
        forward["pytorch"] = None
    results.update(forward_tokens_per_s=forward, max_abs_dp=deltas, forward_rows=args.forward_rows)

    with tempfile.TemporaryDirectory(prefix="batchscore-gpu-") as tmp:
        work = Path(tmp)
        repeats = -(-args.reviews // len(texts))
        big = pa.table({"text": pa.concat_arrays([texts] * repeats).slice(0, args.reviews)})
        pq.write_table(big, work / "big.parquet")
        env = {**os.environ, "BATCHSCORE_COMPILATION_CACHE": str(work / "cache")}
        env.pop("BATCHSCORE_GPU_RNN", None)
        device_flag = "gpu" if gpu is not None else "cpu"
        run = [sys.executable, "-m", "batchscore", "run", str(work / "big.parquet"), "--no-progress",
               "--device", device_flag, "--summary-json", str(work / "s.json")]  # fmt: skip
        ours = run_command([*run, "-o", str(work / "ours.parquet")], env)[0]
        summary = json.loads((work / "s.json").read_text())
        torch_device = "cuda" if gpu is not None else "cpu"
        scorer = [sys.executable, "-m", "benchmarks.torch_scorer", str(work / "big.parquet"),
                  str(work / "torch.parquet"), "", torch_device]  # fmt: skip
        theirs = run_command(scorer, env)[0]
    results["end_to_end"] = {
        "reviews": args.reviews,
        "batchscore_s": ours,
        "batchscore_reviews_per_s": args.reviews / ours,
        "stage_seconds": summary["stage_seconds"],
        "compute": summary["compute"],
        "pytorch_scorer_s": theirs,
        "pytorch_scorer_reviews_per_s": args.reviews / theirs,
        "ratio_vs_pytorch": theirs / ours,
    }
    print(f"device: {results['device']}, JAX {results['jax']}")
    print(f"forward over {args.forward_rows:,} IMDb test reviews ({tokens:,} tokens after truncation):")
    for name, rate in forward.items():
        print(f"  {name:14s} {rate:14,.0f} tokens/s" if rate else f"  {name:14s} (torch not installed)")
    if gpu is not None:
        print(f"  cuDNN / scan: {forward['cudnn'] / forward['scan']:.1f}x")
    print(
        "max |dp|: " + ", ".join(f"{k} {v:.2e}" for k, v in deltas.items()) + " (target vs_cpu_path <= 1e-5)"
    )
    e = results["end_to_end"]
    print(f"end to end, {e['reviews']:,} reviews, start-up included ({e['compute']}):")
    print(f"  batchscore run   {e['batchscore_s']:7.1f} s  {e['batchscore_reviews_per_s']:10,.0f} reviews/s")
    print(
        f"  PyTorch scorer   {e['pytorch_scorer_s']:7.1f} s  "
        f"{e['pytorch_scorer_reviews_per_s']:10,.0f} reviews/s"
    )
    print(f"  batchscore / PyTorch: {e['ratio_vs_pytorch']:.2f}x (target >= 1.5x; >= 100,000 reviews/s)")
    print(f"  stage seconds: {e['stage_seconds']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
