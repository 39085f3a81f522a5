"""Forward passes over encoded rows: bucket, pad, run the jitted model, restore order."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, replace

import jax
import numpy as np

from batchscore.base.errors import BatchscoreError
from batchscore.inference.batching import BucketSpec, pad_batch, plan_scoring_batches
from batchscore.inference.device import out_of_memory_as_error, recurrence_path
from batchscore.model.bilstm import ModelConfig, inference_params, table_forward_logits
from batchscore.model.cudnn import cudnn_forward_logits, device_params
from batchscore.text.encoding import Encoded


@dataclass(frozen=True)
class Truncation:
    max_tokens: int
    head_tokens: int


class Scorer:
    """Holds parameters on one device and turns encoded rows into logits in input order."""

    def __init__(
        self,
        config: ModelConfig,
        params: dict,
        truncation: Truncation,
        spec: BucketSpec | None = None,
        device: jax.Device | list[jax.Device] | None = None,
        precision: str = "float32",
        pool: Executor | None = None,
    ):
        self.config = config
        self.pool = pool  # pads batches ahead of the device, in order
        self.precision = precision
        self.truncation = truncation
        self.spec = spec or BucketSpec()
        # Batches alternate between the devices, so two host devices compute two batches at once.
        devices = device if isinstance(device, list) else [device or jax.devices()[0]]
        self.path = recurrence_path(devices[0])
        self.replicas = []
        if self.path == "cudnn":
            packed = device_params(config, params)
            self.replicas = [(target, jax.device_put(packed, target), None) for target in devices]
            return
        for target in devices:  # the gates pre-scaled and first-layer tables, once per model and device
            self.replicas.append((target, *inference_params(jax.device_put(params, target))))

    def logits(self, encoded: Encoded, rows: np.ndarray | None = None) -> np.ndarray:
        """Logits (len(rows), classes) for the given row positions (default: all), in that order."""
        return self.collect(self.dispatch(encoded, rows))

    def dispatch(self, encoded: Encoded, rows: np.ndarray | None = None) -> Dispatched:
        """Pad and start every batch of these rows on the device(s); collect() fetches the results.

        Nothing waits for the device here, so a caller can dispatch the next rows before it collects
        these (dispatch ahead, fetch behind): the device always has the next batches queued.
        """
        rows = np.arange(len(encoded)) if rows is None else np.asarray(rows)
        if rows.size == 0:
            return Dispatched(0, [])
        lengths = encoded.n_tokens[rows]
        plan = plan_scoring_batches(lengths, self.truncation.max_tokens, self.spec)

        def pad(batch):
            return pad_batch(
                encoded.ids,
                encoded.offsets,
                replace(batch, rows=rows[batch.rows]),
                self.truncation.max_tokens,
                self.truncation.head_tokens,
            )

        padded = self.pool.map(pad, plan) if self.pool is not None else map(pad, plan)
        pending = []
        with out_of_memory_as_error():
            for number, (batch, (ids, kept)) in enumerate(zip(plan, padded, strict=True)):
                device, params, table = self.replicas[number % len(self.replicas)]
                ids = jax.device_put(ids, device)
                kept = jax.device_put(kept, device)
                if self.path == "cudnn":
                    logits = cudnn_forward_logits(
                        self.config, params, ids, kept, "cudnn", self.precision != "float32"
                    )
                else:
                    logits = table_forward_logits(self.config, params, table, ids, kept, self.precision)
                pending.append((batch.rows, logits))
        return Dispatched(rows.size, pending)

    def collect(self, dispatched: Dispatched) -> np.ndarray:
        """The logits of dispatched rows, in their order; every row must have a finite score."""
        out = np.full((dispatched.rows, self.config.num_classes), np.nan, np.float32)
        with out_of_memory_as_error():
            for positions, result in dispatched.pending:
                out[positions] = np.asarray(result)[: positions.size]
        missing = int((~np.isfinite(out).all(axis=1)).sum())
        if missing:  # never write a row without a real score
            raise BatchscoreError(
                f"internal error: {missing} of {dispatched.rows} rows got no finite score; nothing was "
                "written for this window (rerun with --debug and report it)"
            )
        return out


@dataclass(frozen=True)
class Dispatched:
    """Batches started on the device for `rows` rows: (positions in the rows, device logits) each."""

    rows: int
    pending: list
