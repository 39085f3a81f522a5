"""Length bucketing and padding (pure NumPy).

Rows are grouped by token count into a small fixed set of widths, and batch row
counts are rounded up to powers of two, so the number of distinct array shapes
(and therefore XLA compilations) is bounded and known in advance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from batchscore import settings

# Widths chosen by measurement (benchmarks/README.md): finer steps where IMDb-like reviews are dense.
DEFAULT_BOUNDARIES = (32, 64, 96, 128, 160, 192, 256, 320, 400, 512, 768, 1024)
MIN_BATCH_ROWS = 64


@dataclass(frozen=True)
class BucketSpec:
    """How rows are grouped into padded batches."""

    boundaries: tuple[int, ...] = DEFAULT_BOUNDARIES
    token_budget: int = settings.default("batch_tokens")  # padded tokens per batch: rows per width
    max_rows: int = settings.default(
        "max_batch_rows"
    )  # 256 beats 1024 at every input size (docs/determinism.md)

    def widths(self, max_tokens: int) -> tuple[int, ...]:
        """Bucket widths for a truncation length: the boundaries below it, then itself."""
        below = tuple(b for b in sorted(set(self.boundaries)) if b < max_tokens)
        return (*below, max_tokens)

    def rows_for(self, width: int) -> int:
        """Rows per batch at a width: the token budget over the width, a power of two."""
        rows = max(MIN_BATCH_ROWS, min(self.max_rows, self.token_budget // width))
        return 1 << (rows.bit_length() - 1)


GPU_BUCKETS = BucketSpec(token_budget=1 << 20, max_rows=8192)  # a GPU wants far bigger batches


@dataclass(frozen=True)
class Batch:
    rows: np.ndarray  # positions of the batch's rows in the window, in batch order
    width: int  # padded sequence length
    padded_rows: int  # rows after padding the batch up to a power of two


def padded_row_count(n: int) -> int:
    """Round a batch up to a power of two (at least MIN_BATCH_ROWS) to bound shapes."""
    return max(MIN_BATCH_ROWS, 1 << max(0, (n - 1).bit_length()))


def plan_batches(
    lengths: np.ndarray,
    max_tokens: int,
    spec: BucketSpec,
    rng: np.random.Generator | None = None,
    *,
    one_shape_per_width: bool = False,
) -> list[Batch]:
    """Group row positions into batches of similar length.

    Without `rng` the plan is deterministic (longest bucket first, stable order
    within a bucket). With `rng`, rows are shuffled within buckets and batches are
    shuffled, which is what training wants.

    `one_shape_per_width` (scoring): every batch of a width has exactly `spec.rows_for(width)` rows
    and each row stays in its own length's bucket, so a row is always computed in the same compiled
    shape whatever else is in its window. Matmul libraries pick their blocking by shape and CPU
    (cache sizes, vector width), so this is what keeps a row's scores bit-identical across batch-mates,
    windows, shards and resumes on every CPU (docs/determinism.md). Training keeps the older plan
    (power-of-two padding, partial batches topped up with narrower rows) so its runs reproduce.
    """
    lengths = np.minimum(np.asarray(lengths), max_tokens)
    widths = np.array(spec.widths(max_tokens))
    bucket_of_row = np.searchsorted(widths, np.maximum(lengths, 1), side="left")
    pending = [np.flatnonzero(bucket_of_row == bucket) for bucket in range(len(widths))]
    batches: list[Batch] = []
    for bucket in range(len(widths) - 1, -1, -1):
        rows = pending[bucket]
        if rng is not None and rows.size:
            rows = rng.permutation(rows)
        width = int(widths[bucket])
        per_batch = spec.rows_for(width)
        for start in range(0, rows.size, per_batch):
            chunk = [rows[start : start + per_batch]]
            padded = per_batch if one_shape_per_width else padded_row_count(chunk[0].size)
            free = padded - chunk[0].size if rng is None and not one_shape_per_width else 0
            # Training's deterministic plan (batch counts, validation loss): a partial batch takes rows
            # of narrower buckets (next narrower first) into the rows it pads up to a power of two, so
            # there are fewer, fuller batches. Shuffled training batches keep their buckets pure.
            for narrower in range(bucket - 1, -1, -1):
                if free == 0:
                    break
                taken, pending[narrower] = pending[narrower][:free], pending[narrower][free:]
                chunk.append(taken)
                free -= taken.size
            batches.append(Batch(np.concatenate(chunk), width, padded))
    if rng is not None:
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
    return batches


def pad_batch(
    ids: np.ndarray,
    offsets: np.ndarray,
    batch: Batch,
    max_tokens: int,
    head_tokens: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Gather a batch's token ids into a zero-padded (padded_rows, width) matrix.

    A row longer than `max_tokens` keeps its first `head_tokens` and the rest from
    its end: reviews tend to state their verdict in the closing lines. Returns the
    matrix and the kept lengths (0 for padding rows).
    """
    starts = offsets[batch.rows]
    n_tokens = offsets[batch.rows + 1] - starts
    kept = np.minimum(n_tokens, max_tokens)
    cols = np.arange(batch.width)[None, :]
    from_tail = (n_tokens > max_tokens)[:, None] & (cols >= head_tokens)
    source = starts[:, None] + np.where(from_tail, n_tokens[:, None] - max_tokens + cols, cols)
    valid = cols < kept[:, None]
    matrix = np.zeros((batch.padded_rows, batch.width), np.int32)
    lengths = np.zeros(batch.padded_rows, np.int32)
    if ids.size:
        real = matrix[: batch.rows.size]
        np.copyto(real, ids[np.where(valid, source, 0)], where=valid)
    lengths[: batch.rows.size] = kept
    return matrix, lengths
