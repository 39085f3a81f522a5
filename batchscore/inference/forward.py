"""Forward passes over encoded rows: bucket, pad, run the jitted model, restore order."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from functools import lru_cache, partial

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from batchscore.base.errors import BatchscoreError
from batchscore.inference.batching import BucketSpec, pad_batch, plan_scoring_batches, spread_over_shards
from batchscore.inference.device import out_of_memory_as_error, pick_devices, recurrence_path
from batchscore.model.bilstm import ModelConfig
from batchscore.model.cudnn import cudnn_forward_logits, device_params
from batchscore.model.scoring_pass import scoring_logits, scoring_weights
from batchscore.text.encoding import Encoded


@dataclass(frozen=True)
class Truncation:
    max_tokens: int
    head_tokens: int


class Scorer:
    """Holds parameters on its device(s) and turns encoded rows into logits in input order.

    `device`: one device or several (host devices that split every batch); default: what
    pick_devices("auto") gives, every host device on a CPU machine, the first GPU on a GPU one.
    """

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
        self.truncation = truncation
        self.spec = spec or BucketSpec()
        devices = device if isinstance(device, list) else [device] if device else pick_devices("auto")
        self.path = recurrence_path(devices[0])
        if self.path == "cudnn":
            self.shards, self.rows_on = 1, devices[0]
            self.weights = jax.device_put(device_params(config, params), devices[0])
            tf32 = precision != "float32"
            self.forward = lambda weights, ids, kept: cudnn_forward_logits(
                config, weights, ids, kept, "cudnn", tf32
            )
            return
        # Every batch is split by rows over the devices (host devices: one per core), each running
        # the same program on its share with no communication: one compiled program per shape.
        mesh = Mesh(np.array(devices), ("rows",))
        self.shards, self.rows_on = len(devices), NamedSharding(mesh, PartitionSpec("rows"))
        self.weights = jax.device_put(scoring_weights(params), NamedSharding(mesh, PartitionSpec()))
        self.forward = sharded_scoring(config, precision, mesh)

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
        # cuDNN computes a batch's whole padded width: its last batch keeps the smallest ladder step
        plan = plan_scoring_batches(
            lengths, self.truncation.max_tokens, self.spec, self.shards, reuse_shape=self.path != "cudnn"
        )

        def pad(batch):  # in the pool: each row padded straight into its device's share of the batch
            slots = spread_over_shards(batch.padded_rows, self.shards)[: batch.rows.size]
            return slots, *pad_batch(
                encoded.ids,
                encoded.offsets,
                replace(batch, rows=rows[batch.rows]),
                self.truncation.max_tokens,
                self.truncation.head_tokens,
                slots,
            )

        padded = self.pool.map(pad, plan) if self.pool is not None else map(pad, plan)
        pending = []
        with out_of_memory_as_error():
            for batch, (slots, ids, kept) in zip(plan, padded, strict=True):
                ids, kept = jax.device_put(ids, self.rows_on), jax.device_put(kept, self.rows_on)
                pending.append((batch.rows, slots, self.forward(self.weights, ids, kept)))
        return Dispatched(rows.size, pending)

    def collect(self, dispatched: Dispatched) -> np.ndarray:
        """The logits of dispatched rows, in their order; every row must have a finite score."""
        out = np.full((dispatched.rows, self.config.num_classes), np.nan, np.float32)
        with out_of_memory_as_error():
            for positions, slots, result in dispatched.pending:
                out[positions] = np.asarray(result)[slots]
        missing = int((~np.isfinite(out).all(axis=1)).sum())
        if missing:  # never write a row without a real score
            raise BatchscoreError(
                f"internal error: {missing} of {dispatched.rows} rows got no finite score; nothing was "
                "written for this window (rerun with --debug and report it)"
            )
        return out


@lru_cache(maxsize=8)
def sharded_scoring(config: ModelConfig, precision: str, mesh: Mesh) -> Callable:
    """scoring_logits over a batch whose rows are split between the mesh's devices; one jitted
    function per model, precision and device set, so scorers built later reuse its compiled shapes."""
    rows = PartitionSpec("rows")
    per_device = partial(scoring_logits, config, precision=precision)
    return jax.jit(
        # check_vma off: the per-device program has no collectives for it to check, and its loop
        # state starts from constants, which the check would otherwise want marked per device
        jax.shard_map(
            per_device, mesh=mesh, in_specs=(PartitionSpec(), rows, rows), out_specs=rows, check_vma=False
        )
    )


@dataclass(frozen=True)
class Dispatched:
    """Batches started on the device(s) for `rows` rows: (positions in the rows, their slots in the
    batch, device logits) each."""

    rows: int
    pending: list
