"""What the CLI commands do, callable without a terminal: load, run, report."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from batchscore.bundle import Bundle, load_bundle
from batchscore.core.compute import truncation_for
from batchscore.engines import Engine
from batchscore.engines.local import LocalEngine
from batchscore.errors import BatchscoreError, OutputError, UsageError, require_extra
from batchscore.interrupts import stop_on_signals
from batchscore.io.console import STDERR
from batchscore.io.safe_files import write_to_named_target
from batchscore.report import ProgressListener, RunSummary
from batchscore.run.driver import new_summary, score_files
from batchscore.run.options import RunOptions


def run_scoring(
    inputs: list[str],
    output: str | None,
    model: Path | str | None,
    options: RunOptions,
    progress: bool | None = None,
    summary_json: Path | None = None,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
    filesystem=None,
    engine: str = "local",
    ray_address: str | None = None,
) -> RunSummary:
    """`batchscore run`: score, print the summary to stderr, optionally save it as JSON."""
    require_address_space()
    if summary_json is not None and str(summary_json) != "-":
        folder = Path(summary_json).parent
        if not folder.is_dir():  # found now, not after hours of scoring (and never hiding the run's code)
            raise UsageError(f"--summary-json {summary_json}: directory {folder} does not exist")
    with stop_on_signals():
        return _run_scoring(
            inputs, output, model, options, progress, summary_json, log, filesystem, engine, ray_address
        )


def _run_scoring(
    inputs, output, model, options, progress, summary_json, log, filesystem, engine, ray_address
) -> RunSummary:
    summary = None
    try:
        bundle = load_bundle(model)
        show = sys.stderr.isatty() if progress is None else progress
        bar = _progress_bar(show)
        try:
            runner = make_engine(engine, bundle, model, options, ray_address)
            summary = new_summary(bundle, options, runner)
            score_files(bundle, options, runner, inputs, output, summary, filesystem, bar, log)
        except Exception as err:
            if isinstance(err, BatchscoreError) or "RESOURCE_EXHAUSTED" not in str(err):
                raise
            raise UsageError(
                f"out of memory ({str(err).splitlines()[0][:160]}); lower --batch-tokens or "
                "--max-batch-rows, use a smaller --max-tokens (a batch holds at least 48 rows of the "
                "widest length), or give the process more memory"
            ) from err
        finally:
            if bar is not None:
                bar.close()
    except BatchscoreError as err:
        # Every exit is observable: the summary of what was done goes out with the failure.
        summary = summary or RunSummary()
        summary.record_failure(err)
        # A refusal before any work is its one error line (the caller prints it), not an empty summary.
        _report(summary, summary_json, log if summary.did_work else None)
        err.summary = summary
        raise
    _report(summary, summary_json, log)
    return summary


def make_engine(
    name: str, bundle: Bundle, model: Path | str | None, options: RunOptions, ray_address: str | None = None
) -> Engine:
    """The engine `--engine` names, set up for this bundle and these options."""
    truncation = truncation_for(bundle, options.max_tokens)
    if name == "ray":
        require_extra("ray.data", "ray", "--engine ray")
        from batchscore.engines.ray import RayEngine

        return RayEngine(bundle, model, options, truncation, ray_address)
    return LocalEngine(bundle, options, truncation)


MIN_ADDRESS_SPACE = 3 << 30  # below this XLA's CPU client aborts natively (exit 134/139), untrappable


def require_address_space() -> None:
    """A `ulimit -v` too small for JAX is said in one line before JAX starts, not as a native abort."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, ValueError, OSError):
        return
    if soft != resource.RLIM_INFINITY and soft < MIN_ADDRESS_SPACE:
        raise UsageError(
            f"the process may use {soft / 2**30:.1f} GiB of address space (ulimit -v); batchscore needs at "
            f"least {MIN_ADDRESS_SPACE / 2**30:.0f} GiB (JAX reserves it up front); raise the limit"
        )


def _report(summary: RunSummary, summary_json: Path | str | None, log: Callable[[str], None] | None) -> None:
    """The summary on stderr (unless `log` is None), and as JSON in a file (written atomically) or on
    stdout for "-"."""
    if log is not None:
        for line in summary.lines():
            log(line)
    if summary_json is not None:
        write_json_line(summary.to_dict(), summary_json)


def write_json_line(payload: dict, target: Path | str) -> None:
    """`payload` as ONE line of JSON (a scheduler that keeps the last line of stdout gets all of it),
    to stdout for "-", else to a file written atomically."""
    text = json.dumps(payload, separators=(",", ":")) + "\n"
    if str(target) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        write_to_named_target(str(target), text.encode("utf-8"))
    except OSError as err:  # a full disk, a read-only folder: an output problem, exit 5
        raise OutputError(f"--summary-json {target}: cannot write it: {err.strerror or err}") from err


class _ProgressBar(ProgressListener):
    """rows done / total (when known: Parquet inputs), files done, rows/s and ETA on stderr."""

    def __init__(self):
        from tqdm import tqdm

        self.bar = tqdm(unit="rows", desc="scoring", file=STDERR, mininterval=0.5)  # whole rows, not 3.00k
        self.files = 0
        self.total_files = 0

    def planned(self, files: int, rows: int | None) -> None:
        self.total_files = files
        self.bar.total = rows
        self.bar.set_postfix_str(f"files 0/{files}")

    def rows(self, n: int) -> None:
        self.bar.update(n)

    def file_done(self) -> None:
        self.files += 1
        self.bar.set_postfix_str(f"files {self.files}/{self.total_files}")

    def close(self) -> None:
        self.bar.close()


def _progress_bar(enabled: bool) -> _ProgressBar | None:
    return _ProgressBar() if enabled else None


def predict_texts(texts: list[str | None], bundle: Bundle) -> list[dict]:
    """Scores for a few strings, through the Python API (the same path as `run`)."""
    import pandas as pd  # only `predict` needs it: `run` starts without importing pandas

    from batchscore.api import Model

    frame = Model(bundle).predict(texts)
    results = []
    for text, row in zip(texts, frame.itertuples(index=False), strict=True):
        scored = row.error is pd.NA
        results.append(
            {
                "text": text,
                "label": row.label if scored else None,
                "prob_positive": float(row.prob_positive) if scored else None,
                "prob_negative": 1.0 - float(row.prob_positive) if scored else None,  # sums to 1
                "n_tokens": None if pd.isna(row.n_tokens) else int(row.n_tokens),  # none: never tokenized
                "truncated": None if pd.isna(row.truncated) else bool(row.truncated),
                "error": None if scored else row.error,
            }
        )
    return results


def model_card_text(bundle: Bundle) -> str:
    card = bundle.card
    m = bundle.model
    lines = [
        f"model      {bundle.name}",
        f"weights    sha256 {bundle.weights_sha256}",
        f"arch       GloVe {m.embed_dim}d -> BiLSTM {m.num_layers}x{m.hidden} -> "
        f"{'+'.join(('first', 'last', *m.pooling))} ({m.head_width}) "
        f"-> Dense({m.num_classes}); vocab {m.vocab_size:,}",
        f"tokens     max {bundle.max_tokens} (head {bundle.head_tokens} + tail), "
        f"temperature {bundle.temperature:.3f}",
    ]
    for key in ("command", "seed", "epochs_run", "best_epoch", "training_seconds", "machine"):
        if key in card:
            lines.append(f"{key:10s} {card[key]}")
    if "lm_pretraining" in card:
        stage = card["lm_pretraining"]
        losses = " -> ".join(f"{epoch['valid_loss']:.3f}" for epoch in stage["history"])
        lines.append(
            f"pretrain   {stage['epochs']} language-model epochs ({stage['seconds']:.0f} s of "
            f"training_seconds), validation next-token loss {losses}"
        )
    for key in ("train_data", "valid_data", "test_data", "embeddings"):
        if key in card:
            lines.append(f"{key:10s} " + ", ".join(f"{k}={v}" for k, v in card[key].items()))
    for key, name in (("valid_metrics", "validation"), ("test_metrics", "test")):
        metrics = card.get(key) or {}
        metrics = metrics.get("calibrated", metrics)  # validation: after the temperature, as shipped
        if metrics:
            lines.append(f"{name:10s} {_metrics_text(metrics)}")
        lines += [
            f"{'':10s} {band['tokens']} tokens: accuracy {band['accuracy']:.4f} ({band['rows']:,} rows)"
            for band in metrics.get("accuracy_by_length", [])
        ]
    if "build/" in str(card.get("command", "")):
        lines.append(
            f"{'':10s} (build/film-*.parquet: python -m benchmarks.studies.film_split; docs/model-card.md)"
        )
    return "\n".join(lines)


def _metrics_text(metrics: dict) -> str:
    """accuracy 0.9085, ROC-AUC 0.9709, ECE 0.0089, log loss 0.2263 (25,000 rows)."""
    names = (("accuracy", "accuracy"), ("roc_auc", "ROC-AUC"), ("ece", "ECE"), ("log_loss", "log loss"))
    shown = ", ".join(
        f"{label} {metrics[key]:.4f}" for key, label in names if isinstance(metrics.get(key), float | int)
    )
    return shown + (f" ({metrics['rows']:,} rows)" if "rows" in metrics else "")
