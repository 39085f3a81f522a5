"""Ray Data engine: the local engine's stages, spread over a cluster.

Reading and tokenizing run as Ray Data CPU tasks, bucketing and the forward
pass in an actor pool (each actor loads the bundle once; GPU actors when the
cluster has GPUs). Results stream back in input order to the driver, which
writes them through the same crash-safe writer as the local engine, so the
output files, their metadata and `--resume` behave identically. Only the
compute moves; no logic lives here that the local engine does not share.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batchscore import interrupts
from batchscore.batching import BucketSpec
from batchscore.bundle import Bundle, default_bundle_path, load_bundle
from batchscore.encoding import Encoded
from batchscore.errors import InputError
from batchscore.io.paths import InputFile, Location
from batchscore.io.readers import ShardReader
from batchscore.pipeline import FileEvent, FileTask, RunOptions, ScoringJob, Window, encode_window
from batchscore.report import RunSummary
from batchscore.scoring import Scorer, Truncation
from batchscore.text import TokenizerConfig
from batchscore.validation import clean_texts
from batchscore.vocab import Vocab

IDS = "__batchscore_ids"
REASON = "__batchscore_error"
LOGITS = "__batchscore_logits"


def _encode_task(batch: pa.Table, text_column: str, vocab_tokens: list[str], tokenizer: dict) -> pa.Table:
    """CPU task: tokenize one block and attach ids and row errors as extra columns."""
    _, reasons, encoded = encode_window(
        batch, text_column, Vocab(vocab_tokens), TokenizerConfig.from_dict(tokenizer)
    )
    ids = pa.ListArray.from_arrays(
        pa.array(encoded.offsets, pa.int64()).cast(pa.int32()), pa.array(encoded.ids)
    )
    return batch.append_column(IDS, ids).append_column(REASON, pa.array(reasons, pa.string()))


class _ScoreActor:
    """Actor: loads the bundle once, then buckets and scores blocks."""

    def __init__(
        self, bundle_dir: str, truncation: Truncation, buckets: BucketSpec, device: str, precision: str
    ):
        from batchscore.runtime import choose_precision, enable_compilation_cache, pick_device

        enable_compilation_cache()

        bundle = load_bundle(bundle_dir)
        chosen = pick_device(device)
        precision = choose_precision(precision, chosen)[0]
        self.scorer = Scorer(bundle.model, bundle.params, truncation, buckets, chosen, precision)

    def __call__(self, batch: pa.Table) -> pa.Table:
        encoded = _encoded(batch)
        ok = np.flatnonzero(pc.is_null(batch.column(REASON)).to_numpy(zero_copy_only=False))
        logits = np.zeros((batch.num_rows, 2), np.float32)
        logits[ok] = self.scorer.logits(encoded, ok)
        flat = pa.array(logits.reshape(-1))
        return batch.append_column(LOGITS, pa.FixedSizeListArray.from_arrays(flat, 2))


def _encoded(batch: pa.Table) -> Encoded:
    ids = batch.column(IDS).combine_chunks()
    offsets = ids.offsets.to_numpy().astype(np.int64)
    values = ids.values.to_numpy()[offsets[0] : offsets[-1]]
    return Encoded(values.astype(np.int32), offsets - offsets[0])


class RayScoringJob(ScoringJob):
    """ScoringJob whose per-file stream is computed by Ray Data."""

    def __init__(
        self, bundle: Bundle, bundle_dir: Path | None, options: RunOptions, ray_address: str | None, **kwargs
    ):
        super().__init__(bundle, options, **kwargs)
        import ray

        self.bundle_dir = str(bundle_dir or default_bundle_path())
        address = ray_address or os.environ.get("RAY_ADDRESS")
        if not ray.is_initialized():
            ray.init(
                address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
            )
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.actors = max(1, self.gpus or int(resources.get("CPU", 1)) // 2)

    def _score_all(self, files: list[tuple[InputFile, Location]], summary: RunSummary) -> None:
        """File by file: each file is one Ray dataset (issue 14 makes this one stream)."""
        for source, target in files:
            done = summary.files_scored + summary.files_skipped_done
            interrupts.check(f"{done} file(s) complete", self.options.resume_hint)
            task = self._open(source, target)
            try:
                if task.complete_before:
                    self._commit(FileEvent("skip", task), summary)
                    continue
                try:
                    if not task.assemble_only:
                        self._stream(task, summary)
                except InputError as err:
                    if not (self.options.skip_bad_files and len(files) > 1):
                        raise
                    self._commit(FileEvent("bad", task, str(err)), summary)
                    continue
                self._commit(FileEvent("end", task), summary)
            finally:
                task.lock.release()

    def _dataset(self, reader: ShardReader):
        import pyarrow.csv as pacsv
        import ray

        source = reader.source
        location = source.location
        if source.format == "parquet":
            return ray.data.read_parquet(location.path, filesystem=location.filesystem)
        return ray.data.read_csv(
            location.path,
            filesystem=location.filesystem,
            parse_options=pacsv.ParseOptions(delimiter=self.options.csv_delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types=reader.csv_column_types(), check_utf8=False),
        )

    def _stream(self, task: FileTask, summary: RunSummary) -> None:
        import ray

        reader, skip_rows = task.reader, task.skip_rows
        window_rows = self.options.window_rows
        scored = (
            self._dataset(reader)
            .map_batches(
                _encode_task,
                batch_format="pyarrow",
                batch_size=window_rows,
                fn_kwargs={
                    "text_column": self.options.text_column,
                    "vocab_tokens": self.bundle.vocab.tokens,
                    "tokenizer": self.bundle.tokenizer.to_dict(),
                },
            )
            .map_batches(
                _ScoreActor,
                batch_format="pyarrow",
                batch_size=window_rows,
                fn_constructor_kwargs={
                    "bundle_dir": self.bundle_dir,
                    "truncation": self.truncation,
                    "buckets": self.options.buckets,
                    "device": "gpu" if self.gpus else "cpu",
                    "precision": self.options.precision,
                },
                compute=ray.data.ActorPoolStrategy(size=self.actors),
                num_gpus=1 if self.gpus else 0,
            )
        )
        first_row = 0
        stages = summary.stage_seconds
        waited = time.perf_counter()
        for index, batch in enumerate(scored.iter_batches(batch_size=window_rows, batch_format="pyarrow")):
            stages["forward"] += time.perf_counter() - waited  # read, tokenize and forward, on the cluster
            if first_row + batch.num_rows <= skip_rows:  # committed before an interruption
                first_row += batch.num_rows
                continue
            if first_row < skip_rows:
                batch = batch.slice(skip_rows - first_row)
                first_row = skip_rows
            started = time.perf_counter()
            window = self._window(index, first_row, batch, reader)
            window.task = task
            self._write_window(window, summary)
            first_row += batch.num_rows
            waited = time.perf_counter()
            stages["write"] += waited - started

    def _window(self, index: int, first_row: int, batch: pa.Table, reader: ShardReader) -> Window:
        original = reader.repair_strings(batch.drop_columns([IDS, REASON, LOGITS]))
        texts, _ = clean_texts(original.column(self.options.text_column))
        reasons = np.array(batch.column(REASON).to_pylist(), dtype=object)
        logits_all = batch.column(LOGITS).combine_chunks().flatten().to_numpy().reshape(-1, 2)
        ok = reasons == None  # noqa: E711
        window = Window(index, first_row, original, texts, reasons, _encoded(batch))
        window.logits = logits_all[ok]
        return window
