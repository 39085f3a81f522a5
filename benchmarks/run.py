"""All benchmarks in one run, each next to its reference measured in the same run.

    python -m benchmarks.run                      # everything (about 20 minutes on 2 cores)
    python -m benchmarks.run --quick              # smaller inputs, no 1M-row RSS run

Needs the `bench` extra (PyTorch CPU, psutil) and the IMDb test split for the long-review mix
(default ../shared/data/imdb/test.parquet); the short-review mix is generated (benchmarks.short_mix).
The references are the lean PyTorch scorer (benchmarks/torch_scorer.py) and, where `onnx` and
`onnxruntime` are installed, the same model in ONNX Runtime (benchmarks/onnx_scorer.py). Prints a table of
throughputs and ratios with the CPU's model and features, and writes it as JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from batchscore.inference.device import cpu_summary
from batchscore.model.bundle import default_bundle_path, load_bundle
from batchscore.text.tokenizer import tokenize_array
from benchmarks.common import (
    DEFAULT_IMDB,
    ROOT,
    bench_forward,
    machine_peak,
    onnx_runtime_available,
    run_command,
    take_turns,
    timed,
)
from benchmarks.short_mix import write_short_parquet


def bench_tokenizer(texts: pa.Array) -> dict:
    from benchmarks.torch_scorer import python_tokenize

    tokenize_array(texts.slice(0, 100))
    ours, _ = timed(lambda: tokenize_array(texts), repeat=3)
    values = texts.to_pylist()
    reference, _ = timed(lambda: [python_tokenize(t) for t in values])
    n = len(texts)
    return {
        "rows": n,
        "batchscore_reviews_s": n / ours,
        "python_regex_reviews_s": n / reference,
        "ratio_vs_python": reference / ours,
    }


def bench_end_to_end(
    source: Path, rows: int, work: Path, env: dict, model: list[str], textbook: bool = True, rounds: int = 3
) -> dict:
    """`batchscore run` (warm and cold compilation cache) against the reference scorers, fresh processes;
    the warm run and the references as medians of `rounds` turns (take_turns)."""
    batchscore = [sys.executable, "-m", "batchscore", "run", str(source), "--no-progress", "--overwrite",
                  *model, "-o", str(work / "bs.parquet")]  # fmt: skip
    cold_env = {**env, "BATCHSCORE_COMPILATION_CACHE": str(work / f"e2e-cache-{source.stem}")}
    cold, _ = run_command(batchscore, cold_env)  # fills the cache the warm runs use
    python = [sys.executable, "-m"]
    torch = [*python, "benchmarks.torch_scorer", str(source), str(work / "t.parquet"), *model[1:]]
    runs = {"batchscore": partial(run_command, batchscore, cold_env)}
    runs["torch"] = partial(run_command, torch, env)
    if onnx_runtime_available():  # the ONNX Runtime reference, the same way (benchmarks/onnx_scorer.py)
        ort = [*python, "benchmarks.onnx_scorer", str(source), str(work / "o.parquet"), *model[1:]]
        runs["ort"] = partial(run_command, ort, env)
    times, _ = take_turns(runs, rounds)
    warm, torch_s = float(np.median(times["batchscore"])), float(np.median(times["torch"]))
    result = {
        "rows": rows,
        "rounds": times,
        "batchscore_cold_s": cold,
        "batchscore_warm_s": warm,
        "torch_scorer_s": torch_s,
        "batchscore_reviews_s": rows / warm,
        "torch_reviews_s": rows / torch_s,
        "ratio_vs_torch": torch_s / warm,
    }
    if "ort" in times:
        ort_s = float(np.median(times["ort"]))
        result.update(ort_scorer_s=ort_s, ort_reviews_s=rows / ort_s, ratio_vs_ort=ort_s / warm)
    if textbook:  # every review padded to 500: far too slow to run on the short mix, and run once
        textbook_cmd = [
            sys.executable,
            "-m",
            "benchmarks.textbook_scorer",
            str(source),
            str(work / "tb.parquet"),
        ]
        textbook_s, _ = run_command([*textbook_cmd, *model[1:]], env)
        result.update(textbook_s=textbook_s, ratio_vs_textbook=textbook_s / warm)
    return result


def bench_start(work: Path, imdb: pa.Table, env: dict, model: list[str]) -> dict:
    """`batchscore run` on 10 IMDb rows: no compilation cache, then a warm one (best of three)."""
    ten = work / "ten.parquet"
    pq.write_table(imdb.slice(0, 10), ten)
    cmd = [
        sys.executable,
        "-m",
        "batchscore",
        "run",
        str(ten),
        "-o",
        str(work / "ten.out.parquet"),
        "--no-progress",
        "--overwrite",
        *model,
    ]
    cold, _ = run_command(cmd, {**env, "BATCHSCORE_COMPILATION_CACHE": "off"})
    cache = {**env, "BATCHSCORE_COMPILATION_CACHE": str(work / "start-cache")}
    run_command(cmd, cache)
    warm = min(run_command(cmd, cache)[0] for _ in range(3))
    return {"cold_start_10_rows_s": cold, "warm_start_10_rows_s": warm, "ratio": cold / warm}


def synthetic_parquet(path: Path, rows: int, seed: int = 0) -> None:
    """Short generated reviews, written in row groups so the generator itself stays small."""
    sys.path.insert(0, str(ROOT / "sample_data"))
    from make_samples import NEGATIVE, OPENERS, POSITIVE

    rng = np.random.default_rng(seed)
    pool = np.array(OPENERS + POSITIVE + NEGATIVE, dtype=object)
    with pq.ParquetWriter(path, pa.schema([("id", pa.int64()), ("text", pa.string())])) as writer:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            first, second = pool[rng.integers(0, pool.size, n)], pool[rng.integers(0, pool.size, n)]
            texts = [f"{a} {b}" for a, b in zip(first, second, strict=True)]
            writer.write_table(pa.table({"id": np.arange(start, start + n), "text": texts}))


def bench_memory(work: Path, sizes: list[int], env: dict, model: list[str]) -> dict:
    out = {}
    for rows in sizes:
        source = work / f"synthetic-{rows}.parquet"
        synthetic_parquet(source, rows)
        seconds, peak = run_command(
            [
                sys.executable,
                "-m",
                "batchscore",
                "run",
                str(source),
                "-o",
                str(work / f"syn-{rows}.out.parquet"),
                "--no-progress",
                "--overwrite",
                *model,
            ],
            {**env, "BATCHSCORE_COMPILATION_CACHE": str(work / "mem-cache")},
        )
        out[str(rows)] = {"peak_rss_mb": peak / 2**20, "seconds": seconds, "reviews_s": rows / seconds}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--imdb", type=Path, default=DEFAULT_IMDB, help="IMDb test split (Parquet)")
    parser.add_argument("--model", default=None, help="bundle (default: the bundled model)")
    parser.add_argument("--rows", type=int, default=5000, help="IMDb reviews for forward and end-to-end runs")
    parser.add_argument("--short-rows", type=int, default=20_000, help="generated short reviews, the same")
    parser.add_argument("--rss-rows", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--quick", action="store_true", help="1,000 / 4,000 reviews, RSS at 100k rows only")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.short_rows, args.rss_rows = 1000, 4000, [100_000]

    bundle = load_bundle(args.model)
    imdb = pq.read_table(args.imdb, columns=["id", "text"])
    sample = imdb.take(np.random.default_rng(0).permutation(imdb.num_rows)[: args.rows])
    texts = sample.column("text").combine_chunks()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    model = ["--model", str(args.model)] if args.model else []
    results: dict = {
        "machine": f"{cpu_summary()}; {platform.machine()}, python {platform.python_version()}",
        "model": bundle.name,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("machine peak ...", flush=True)
        results["peak"] = machine_peak()
        print("tokenizer ...", flush=True)
        results["tokenizer"] = bench_tokenizer(texts)
        print("forward (IMDb mix) ...", flush=True)
        bundle_dir = Path(args.model) if args.model else default_bundle_path()
        results["forward_imdb"] = bench_forward(bundle, texts, "imdb", bundle_dir=bundle_dir)
        short_source = work / "short.parquet"
        write_short_parquet(short_source, args.short_rows, seed=1)
        short = pq.read_table(short_source).column("text").combine_chunks()
        print("forward (short mix) ...", flush=True)
        results["forward_short"] = bench_forward(
            bundle, short, "generated-short", textbook=False, bundle_dir=bundle_dir
        )
        source = work / "imdb.parquet"
        pq.write_table(sample, source)
        print("end to end (IMDb mix) ...", flush=True)
        results["end_to_end"] = bench_end_to_end(source, args.rows, work, env, model)
        print("end to end (short mix) ...", flush=True)
        results["end_to_end_short"] = bench_end_to_end(short_source, args.short_rows, work, env, model, False)
        print("start-up ...", flush=True)
        results["start"] = bench_start(work, imdb, env, model)
        if args.rss_rows:
            print("peak RSS ...", flush=True)
            results["memory"] = bench_memory(work, args.rss_rows, env, model)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(format_table(results))


def format_table(r: dict) -> str:
    lines = [f"machine: {r['machine']}   model: {r['model']}", ""]
    t = r["tokenizer"]
    lines.append(
        f"tokenizer       batchscore {t['batchscore_reviews_s']:>10,.0f} reviews/s   python regex "
        f"{t['python_regex_reviews_s']:>9,.0f}   x{t['ratio_vs_python']:.1f}"
    )
    for key in ("forward_imdb", "forward_short"):
        f = r[key]
        textbook = (
            f" | textbook {f['textbook_tokens_s']:>9,.0f} tok/s x{f['ratio_vs_textbook']:.2f}"
            if "textbook_tokens_s" in f
            else ""
        )
        lines.append(
            f"forward {f['mix']:<15s} (mean {f['mean_tokens']:.0f} tokens, medians of "
            f"{len(f['rounds']['batchscore'])} alternating rounds)  batchscore "
            f"{f['batchscore_tokens_s']:>9,.0f} tok/s {f['batchscore_reviews_s']:>7,.0f} rev/s | PyTorch "
            f"{f['torch_tokens_s']:>9,.0f} tok/s x{f['ratio_vs_torch']:.2f}{textbook}"
            f" | max |dp| vs PyTorch {f['max_prob_difference_vs_torch']:.1e}"
            + (
                f" | ONNX Runtime {f['ort_tokens_s']:>9,.0f} tok/s x{f['ratio_vs_ort']:.2f}, max |dp| "
                f"{f['max_prob_difference_vs_ort']:.1e}"
                if "ort_tokens_s" in f
                else ""
            )
        )
    peak, f = r["peak"], r["forward_imdb"]
    lines.append(
        f"forward FLOP/s (real tokens, IMDb mix): {f['batchscore_gflops']:.1f} GFLOP/s = "
        f"{f['batchscore_gflops'] / peak['dense_matmul_gflops']:.0%} of a dense float32 matmul here "
        f"({peak['dense_matmul_gflops']:.0f} GFLOP/s), {f['batchscore_gflops'] / peak['nominal_gflops']:.0%} "
        f"of the nominal peak ({peak['nominal_gflops']:.0f} GFLOP/s: {peak['nominal_basis']})"
    )
    for key, mix in (("end_to_end", "IMDb"), ("end_to_end_short", "short")):
        e = r[key]
        textbook = (
            f" | textbook {e['textbook_s']:.1f}s x{e['ratio_vs_textbook']:.2f}" if "textbook_s" in e else ""
        )
        lines.append(
            f"end to end {e['rows']:,} {mix} reviews (medians of {len(e['rounds']['batchscore'])} "
            f"alternating rounds): batchscore {e['batchscore_warm_s']:.1f}s "
            f"({e['batchscore_reviews_s']:,.0f} rev/s; cold cache {e['batchscore_cold_s']:.1f}s) | PyTorch "
            f"scorer {e['torch_scorer_s']:.1f}s x{e['ratio_vs_torch']:.2f}{textbook}"
            + (
                f" | ONNX Runtime {e['ort_scorer_s']:.1f}s x{e['ratio_vs_ort']:.2f}"
                if "ort_scorer_s" in e
                else ""
            )
        )
    s = r["start"]
    lines.append(
        f"start-up, 10 rows: cold {s['cold_start_10_rows_s']:.1f}s, warm cache "
        f"{s['warm_start_10_rows_s']:.1f}s (x{s['ratio']:.1f})"
    )
    for rows, m in r.get("memory", {}).items():
        lines.append(
            f"peak RSS {int(rows):>9,} rows: {m['peak_rss_mb']:,.0f} MB in {m['seconds']:.0f}s "
            f"({m['reviews_s']:,.0f} rev/s)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
