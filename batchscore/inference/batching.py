"""Length bucketing and padding (pure NumPy).

Rows are grouped by token count into a small fixed set of widths, and batch row counts come from a
short ladder, so the number of distinct array shapes (and therefore XLA compilations) is bounded
and known in advance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from batchscore.base import settings

# Scoring widths only bound array sizes (a batch's loop runs to its longest row), so they double: each
# is one more compiled shape, and a shape costs a process about 60 ms (docs/dev/performance-log.md).
# None below 32: a 16-wide batch was 2-4% faster than the same rows at 32, less than its shape costs.
DEFAULT_BOUNDARIES = (32, 64, 128, 256, 512, 1024)
MIN_BATCH_ROWS = 64  # training's plan: power-of-two batches of at least this many rows
# Scoring batches hold a multiple of ROW_QUANTUM rows: 48 = 3 x 16 floats, the row block of XLA:CPU's
# matmul kernel with AVX-512 (3 x 8 with AVX2, 3 x 4 with NEON), so no row of any batch falls into a
# remainder kernel, whose rounding differs (docs/determinism.md). The ladder doubles from there.
ROW_QUANTUM = 48


def ladder_rows(rows: int) -> int:
    """The smallest row count of the scoring ladder (ROW_QUANTUM x 2^k) that holds `rows` rows."""
    blocks = max(1, -(-rows // ROW_QUANTUM))
    return ROW_QUANTUM << (blocks - 1).bit_length()


@dataclass(frozen=True)
class BucketSpec:
    """How rows are grouped into padded batches."""

    boundaries: tuple[int, ...] = DEFAULT_BOUNDARIES
    token_budget: int = settings.default("batch_tokens")  # padded tokens per batch: rows per width
    max_rows: int = settings.default("max_batch_rows")

    def widths(self, max_tokens: int) -> tuple[int, ...]:
        """Bucket widths for a truncation length: the boundaries below it, then itself."""
        below = tuple(b for b in sorted(set(self.boundaries)) if b < max_tokens)
        return (*below, max_tokens)

    def rows_for(self, width: int) -> int:
        """Training: rows per batch at a width, the token budget over the width, a power of two."""
        rows = max(MIN_BATCH_ROWS, min(self.max_rows, self.token_budget // width))
        return 1 << (rows.bit_length() - 1)

    def scoring_rows_for(self, width: int) -> int:
        """Scoring: rows of a full batch at a width on one device, the largest ladder step within the
        token budget and `max_rows` (one ROW_QUANTUM at least)."""
        limit = max(ROW_QUANTUM, min(self.max_rows, self.token_budget // width))
        return ROW_QUANTUM << ((limit // ROW_QUANTUM).bit_length() - 1)


GPU_BUCKETS = BucketSpec(token_budget=1 << 20, max_rows=8192)  # a GPU wants far bigger batches


@dataclass(frozen=True)
class Batch:
    rows: np.ndarray  # positions of the batch's rows in the window, in batch order
    width: int  # padded sequence length
    padded_rows: int  # rows after padding (a power of two in training, a ladder step in scoring)


def padded_row_count(n: int) -> int:
    """Round a batch up to a power of two (at least MIN_BATCH_ROWS) to bound shapes."""
    return max(MIN_BATCH_ROWS, 1 << max(0, (n - 1).bit_length()))


def plan_batches(
    lengths: np.ndarray,
    max_tokens: int,
    spec: BucketSpec,
    rng: np.random.Generator | None = None,
) -> list[Batch]:
    """Training's plan: group row positions into power-of-two batches of similar length.

    Without `rng` the plan is deterministic (longest bucket first, stable order within a bucket) and
    a bucket's partial last batch takes rows of narrower buckets into its padding, so there are
    fewer, fuller batches (batch counts, validation loss). With `rng`, rows are shuffled within
    buckets, buckets stay pure and batches are shuffled. Kept as it was so training runs reproduce.
    """
    buckets = _buckets(lengths, max_tokens, spec)
    if rng is not None:  # widest bucket first: the order the random stream has always been drawn in
        shuffled = [(w, rng.permutation(rows) if rows.size else rows) for w, rows in reversed(buckets)]
        buckets = shuffled[::-1]
    batches = _fill(buckets, spec.rows_for, padded_row_count, top_up=rng is None)
    if rng is not None:
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
    return batches


def plan_scoring_batches(
    lengths: np.ndarray, max_tokens: int, spec: BucketSpec, shards: int = 1, reuse_shape: bool = True
) -> list[Batch]:
    """Scoring's plan: every row, longest first, cut into full batches of `spec.scoring_rows_for(width)`
    rows per device (`shards` devices share each batch), `width` being the bucket of the batch's
    longest row. The rows left at the end, the plan's shortest, take the shape of the full batch
    before them where they fit in it (`reuse_shape`: the CPU pass, whose loop stops at the batch's
    longest row, computes little for their padding rows, where a shape of their own costs the
    process tens of milliseconds to trace and load); without such a batch, or for a pass that
    computes its whole width (cuDNN), they go into the smallest ladder step that holds them.

    The loop of a batch runs to its longest row, so rows of nearly one length together waste almost
    nothing, and the buckets only bound array sizes: few widths, few compiled shapes. Any grouping
    is allowed because a row's scores do not depend on its batch: every device's row count is a
    multiple of ROW_QUANTUM, steps after a row's length never reach its state, and the head adds
    each row's terms in one order (docs/determinism.md). So ten rows of any lengths are one batch.
    """
    clipped = _clipped(lengths, max_tokens)
    order = np.argsort(-clipped, kind="stable")
    widths = spec.widths(max_tokens)
    batches: list[Batch] = []
    start = 0
    while start < order.size:
        width = widths[_bucket_of(clipped[order[start]], widths)]
        full = spec.scoring_rows_for(width) * shards
        rows = order[start : start + full]
        padded = full
        if rows.size < full and reuse_shape and batches and rows.size <= batches[-1].padded_rows:
            width, padded = batches[-1].width, batches[-1].padded_rows
        elif rows.size < full:
            padded = ladder_rows(-(-rows.size // shards)) * shards
        batches.append(Batch(rows, width, padded))
        start += rows.size
    return batches


def _clipped(lengths: np.ndarray, max_tokens: int) -> np.ndarray:
    """Token counts as the model sees them: cut to `max_tokens`, and an empty row as one token."""
    return np.maximum(np.minimum(np.asarray(lengths), max_tokens), 1)


def _bucket_of(clipped, widths: tuple[int, ...]):
    """The index of the narrowest width that holds each clipped length."""
    return np.searchsorted(np.array(widths), clipped, side="left")


def _buckets(lengths: np.ndarray, max_tokens: int, spec: BucketSpec) -> list[tuple[int, np.ndarray]]:
    """(width, row positions) per bucket, narrowest first, each row in the narrowest that holds it."""
    widths = spec.widths(max_tokens)
    bucket_of_row = _bucket_of(_clipped(lengths, max_tokens), widths)
    return [(width, np.flatnonzero(bucket_of_row == bucket)) for bucket, width in enumerate(widths)]


def _fill(buckets, full_rows, padded_rows, top_up: bool) -> list[Batch]:
    """Batches from the widest bucket down; with `top_up`, a batch's padding rows take narrower rows."""
    pending = [rows for _, rows in buckets]
    batches: list[Batch] = []
    for bucket in range(len(buckets) - 1, -1, -1):
        width, rows = buckets[bucket][0], pending[bucket]
        per_batch = full_rows(width)
        for start in range(0, rows.size, per_batch):
            chunk = [rows[start : start + per_batch]]
            padded = padded_rows(chunk[0].size)
            free = padded - chunk[0].size if top_up else 0
            for narrower in range(bucket - 1, -1, -1):
                if free == 0:
                    break
                taken, pending[narrower] = pending[narrower][:free], pending[narrower][free:]
                chunk.append(taken)
                free -= taken.size
            batches.append(Batch(np.concatenate(chunk), width, padded))
    return batches


def spread_over_shards(padded_rows: int, shards: int) -> np.ndarray:
    """Where the k-th row of a batch goes so that every shard gets every shards-th row: the rows come
    longest first, so each device's share ends up as long as the others' and none waits."""
    k = np.arange(padded_rows)
    return (k % shards) * (padded_rows // shards) + k // shards


def pad_batch(
    ids: np.ndarray,
    offsets: np.ndarray,
    batch: Batch,
    max_tokens: int,
    head_tokens: int,
    slots: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gather a batch's token ids into a zero-padded (padded_rows, width) matrix.

    A row longer than `max_tokens` keeps its first `head_tokens` and the rest from
    its end: reviews tend to state their verdict in the closing lines. Returns the
    matrix and the kept lengths (0 for padding rows). The k-th row goes to matrix row
    `slots[k]` (spread_over_shards), by default to row k.
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
    at = slice(0, batch.rows.size) if slots is None else slots[: batch.rows.size]
    if ids.size:
        matrix[at] = np.where(valid, ids[np.where(valid, source, 0)], 0)
    lengths[at] = kept
    return matrix, lengths
