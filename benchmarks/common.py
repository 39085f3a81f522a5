"""What the benchmark scripts share: paths, timing, the forward-pass measurement (batchscore against
the PyTorch reference, in one process) and a command's wall time and peak memory."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from batchscore.inference.forward import Scorer, Truncation
from batchscore.model.probabilities import softmax
from batchscore.text.encoding import encode

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IMDB = ROOT.parent / "shared" / "data" / "imdb" / "test.parquet"


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    """Best wall time of `repeat` calls (after the caller's warm-up) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def take_turns(engines: dict[str, Callable[[], object]], rounds: int) -> tuple[dict[str, list[float]], dict]:
    """Each engine once a round, in turn, `rounds` times: wall seconds per engine and each one's last
    result. The benchmarks report medians of such rounds: a shared machine's speed drifts by tens of
    percent within minutes, which one run of each would report as a ratio."""
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    results: dict = {}
    for _ in range(rounds):
        for name, run in engines.items():
            elapsed, results[name] = timed(run)
            seconds[name].append(elapsed)
    return seconds, results


def truncated_rows(encoded, truncation: Truncation) -> list[np.ndarray]:
    """The exact token ids batchscore feeds the model (head + tail), for the references."""
    rows = []
    for i in range(len(encoded)):
        ids = encoded.ids[encoded.offsets[i] : encoded.offsets[i + 1]]
        if ids.size > truncation.max_tokens:
            tail = truncation.max_tokens - truncation.head_tokens
            ids = np.concatenate([ids[: truncation.head_tokens], ids[-tail:]])
        rows.append(ids)
    return rows


def model_flops_per_token(config) -> int:
    """Multiply-adds x 2 per real token: every layer's input and recurrent matmuls, both directions
    (720k for the bundled model's sizes). Cell and head are ignored."""
    four_h = 4 * config.hidden
    flops = 0
    for layer in range(config.num_layers):
        d_in = config.embed_dim if layer == 0 else 2 * config.hidden
        flops += 2 * 2 * (d_in + config.hidden) * four_h
    return flops


def machine_peak() -> dict:
    """Two yardsticks for the forward pass's FLOP/s: a dense float32 matmul measured now, in this
    process (what XLA:CPU reaches on this machine), and the nominal vector peak from the CPU flags and
    clock (cores x MHz x FLOP/cycle, two FMA units assumed; virtual CPUs may clock otherwise)."""
    import jax
    import jax.numpy as jnp

    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    jax.block_until_ready(matmul(a))
    seconds, _ = timed(lambda: jax.block_until_ready(matmul(a)), repeat=5)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    mhz = [float(line.split(":")[1]) for line in cpuinfo.splitlines() if line.startswith("cpu MHz")]
    per_cycle = 64 if " avx512f" in flags else 32 if " fma" in flags else 8
    cores, clock = os.cpu_count() or 1, max(mhz) if mhz else 0.0
    return {
        "dense_matmul_gflops": 2 * n**3 / seconds / 1e9,
        "nominal_gflops": cores * clock * per_cycle / 1e3,
        "nominal_basis": f"{cores} cores x {clock:.0f} MHz x {per_cycle} FLOP/cycle",
    }


def bench_forward(
    bundle,
    texts: pa.Array,
    label: str,
    textbook: bool = True,
    bundle_dir: Path | None = None,
    rounds: int = 3,
) -> dict:
    """Forward only, after compilation: batchscore's Scorer against the PyTorch model and, where it is
    installed and `bundle_dir` given, ONNX Runtime, on the same rows and weights, in this process,
    medians of `rounds` turns (take_turns). The textbook path (every review padded to 500) runs once."""
    import torch

    from benchmarks.textbook_scorer import textbook_logits
    from benchmarks.torch_scorer import from_bundle, torch_logits

    truncation = Truncation(bundle.max_tokens, bundle.head_tokens)
    encoded = encode(texts, bundle.vocab, bundle.tokenizer)
    keep = np.flatnonzero(encoded.n_tokens > 0)
    rows = truncated_rows(encoded, truncation)
    rows = [rows[i] for i in keep]
    tokens = int(sum(r.size for r in rows))
    scorer = Scorer(bundle.model, bundle.params, truncation)
    scorer.logits(encoded, keep)  # compile every bucket shape first
    torch.set_num_threads(os.cpu_count() or 1)
    model = from_bundle(bundle)
    torch_logits(model, rows[:256])
    engines = {"batchscore": lambda: scorer.logits(encoded, keep), "torch": lambda: torch_logits(model, rows)}
    if bundle_dir is not None and onnx_runtime_available():
        from benchmarks.onnx_scorer import ort_logits, session

        runner = session(bundle_dir)
        ort_logits(runner, rows[:256])
        engines["ort"] = lambda: ort_logits(runner, rows)
    seconds, logits = take_turns(engines, rounds)
    median = {name: float(np.median(times)) for name, times in seconds.items()}

    def gap(name: str) -> float:  # the largest probability difference from batchscore's
        return float(np.abs(softmax(logits["batchscore"])[:, 1] - softmax(logits[name])[:, 1]).max())

    ours_s, torch_s, n = median["batchscore"], median["torch"], len(rows)
    result = {
        "mix": label,
        "rows": n,
        "tokens": tokens,
        "mean_tokens": tokens / n,
        "rounds": seconds,
        "batchscore_tokens_s": tokens / ours_s,
        "batchscore_reviews_s": n / ours_s,
        "torch_tokens_s": tokens / torch_s,
        "torch_reviews_s": n / torch_s,
        "ratio_vs_torch": torch_s / ours_s,
        "batchscore_gflops": tokens * model_flops_per_token(bundle.model) / ours_s / 1e9,
        "max_prob_difference_vs_torch": gap("torch"),
    }
    if "ort" in median:
        result.update(
            ort_tokens_s=tokens / median["ort"],
            ratio_vs_ort=median["ort"] / ours_s,
            max_prob_difference_vs_ort=gap("ort"),
        )
    if textbook:
        textbook_logits(bundle, rows[:64])
        textbook_s, _ = timed(lambda: textbook_logits(bundle, rows))
        result.update(textbook_tokens_s=tokens / textbook_s, ratio_vs_textbook=textbook_s / ours_s)
    return result


def onnx_runtime_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def run_command(args: list[str], env: dict | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes, whole process tree) of a command."""
    import psutil

    started = time.perf_counter()
    process = psutil.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = 0
    while process.poll() is None:
        try:
            tree = [process, *process.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {process.stderr.read().decode()[-2000:]}")
    return elapsed, peak
