"""The model side shared by the local engine and the Python API: tables encoded into windows in a
pool of host threads, and windows scored on this process's devices, many windows per batch plan."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from batchscore.inference.compute import ComputePlan
from batchscore.inference.forward import Scorer, Truncation
from batchscore.inference.rows import Window, make_window
from batchscore.model.bundle import Bundle
from batchscore.text.encoding import Encoded


class WindowScorer:
    """Encodes tables into windows and scores windows on this process's devices (the local engine's
    and the Python API's model side)."""

    def __init__(
        self, bundle: Bundle, compute: ComputePlan, truncation: Truncation, host_workers: int | None
    ):
        self.bundle = bundle
        # tokenizing and padding run in these threads (they release the GIL in Arrow and NumPy)
        self.host_workers = host_workers or os.cpu_count() or 1
        self.host_pool = ThreadPoolExecutor(self.host_workers, "batchscore-host")
        self.scorer = Scorer(
            bundle.model,
            bundle.params,
            truncation,
            compute.buckets,
            list(compute.devices),
            compute.precision,
            self.host_pool,
        )

    def window(self, table, first_row: int, text_column: str) -> Window:
        bundle = self.bundle
        return make_window(
            table, first_row, text_column, bundle.vocab, bundle.tokenizer, self.host_pool, self.host_workers
        )

    def dispatch(self, windows: list[Window]) -> Callable[[], None]:
        """Start the forward pass of the windows' scorable rows, bucketed and batched across all of
        them; the returned function waits for it and sets each window's logits."""
        if not windows:
            return lambda: None
        ok_rows, base_row = [], 0
        for window in windows:
            ok_rows.append(window.scorable + base_row)
            base_row += len(window.encoded)
        combined = Encoded.concat([window.encoded for window in windows])
        dispatched = self.scorer.dispatch(combined, np.concatenate(ok_rows))

        def fetch() -> None:
            logits = self.scorer.collect(dispatched)
            first = 0
            for window, rows in zip(windows, ok_rows, strict=True):
                window.logits = logits[first : first + rows.size]
                first += rows.size

        return fetch
