"""Bucketing never drops, duplicates or reorders rows, and padding/truncation are exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from batchscore.inference.batching import (
    ROW_QUANTUM,
    BucketSpec,
    pad_batch,
    plan_batches,
    plan_scoring_batches,
    spread_over_shards,
)
from tests.helpers import read_scores


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=700), max_size=400),
    max_tokens=st.sampled_from([16, 100, 400, 512]),
    budget=st.sampled_from([256, 4096, 65536]),
    shuffle=st.booleans(),
)
def test_every_row_lands_in_exactly_one_batch(lengths, max_tokens, budget, shuffle):
    lengths = np.array(lengths, dtype=np.int64)
    spec = BucketSpec(token_budget=budget, max_rows=512)
    rng = np.random.default_rng(0) if shuffle else None
    batches = plan_batches(lengths, max_tokens, spec, rng=rng)
    rows = np.concatenate([b.rows for b in batches]) if batches else np.array([], np.int64)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    for batch in batches:
        assert np.all(np.minimum(lengths[batch.rows], max_tokens) <= batch.width)
        assert batch.rows.size <= batch.padded_rows
        assert batch.padded_rows & (batch.padded_rows - 1) == 0  # a power of two
        assert batch.width in spec.widths(max_tokens)


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=700), max_size=400),
    max_tokens=st.sampled_from([16, 100, 400, 512]),
    budget=st.sampled_from([256, 4096, 65536]),
    shards=st.sampled_from([1, 2, 3]),
    reuse_shape=st.booleans(),
)
# a narrow tail with more rows than the wide full batch before it holds: a ladder step of its own
@example(lengths=[300] * 48 + [10] * 60, max_tokens=400, budget=4096, shards=1, reuse_shape=True)
def test_scoring_plan_places_every_row_once_in_whole_row_quanta(
    lengths, max_tokens, budget, shards, reuse_shape
):
    lengths = np.array(lengths, dtype=np.int64)
    spec = BucketSpec(token_budget=budget, max_rows=512)
    batches = plan_scoring_batches(lengths, max_tokens, spec, shards, reuse_shape)
    rows = np.concatenate([b.rows for b in batches]) if batches else np.array([], np.int64)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    clipped = np.maximum(np.minimum(lengths, max_tokens), 1)
    assert np.all(np.diff(clipped[rows]) <= 0)  # longest first: a batch's rows are of similar lengths
    for number, batch in enumerate(batches):
        assert np.all(clipped[batch.rows] <= batch.width)
        per_device = batch.padded_rows // shards
        assert batch.rows.size <= batch.padded_rows and per_device <= spec.scoring_rows_for(batch.width)
        assert per_device % ROW_QUANTUM == 0 and batch.width in spec.widths(max_tokens)
        blocks = per_device // ROW_QUANTUM
        assert blocks & (blocks - 1) == 0  # a ladder step: few compiled shapes
        if number < len(batches) - 1:  # only the last batch has padding rows
            assert batch.rows.size == batch.padded_rows
        elif reuse_shape and number > 0 and batch.rows.size <= batches[-2].padded_rows:
            # no shape of its own: the one before it
            assert (batch.padded_rows, batch.width) == (batches[-2].padded_rows, batches[-2].width)
        else:  # the smallest ladder step that holds it: over half full
            assert per_device == ROW_QUANTUM or batch.rows.size > batch.padded_rows // 2


def test_shapes_are_bounded_by_buckets_and_powers_of_two():
    lengths = np.random.default_rng(1).integers(1, 2000, size=50_000)
    spec = BucketSpec()
    shapes = {(b.padded_rows, b.width) for b in plan_batches(lengths, 400, spec)}
    widths = spec.widths(400)
    assert {w for _, w in shapes} <= set(widths)
    assert len(shapes) <= len(widths) * 8


def test_pad_batch_keeps_head_and_tail_of_long_rows():
    ids = np.arange(100, 130, dtype=np.int32)  # row 0: 20 tokens, row 1: 10 tokens
    offsets = np.array([0, 20, 30])
    batch = plan_batches(np.array([20, 10]), 8, BucketSpec(boundaries=(8,)))[0]
    matrix, lengths = pad_batch(ids, offsets, batch, max_tokens=8, head_tokens=3)
    by_row = {int(r): (matrix[i], lengths[i]) for i, r in enumerate(batch.rows)}
    row0, len0 = by_row[0]
    assert len0 == 8
    assert row0.tolist() == [100, 101, 102, 115, 116, 117, 118, 119]
    row1, len1 = by_row[1]
    assert len1 == 8 and row1.tolist() == [120, 121, 122, 125, 126, 127, 128, 129]
    assert lengths[2:].sum() == 0 and matrix[2:].sum() == 0
    # split over two devices: each row lands in its device's share, the same ids and lengths
    slots = spread_over_shards(batch.padded_rows, 2)
    spread, spread_lengths = pad_batch(ids, offsets, batch, max_tokens=8, head_tokens=3, slots=slots)
    assert np.array_equal(spread[slots], matrix) and np.array_equal(spread_lengths[slots], lengths)
    assert sorted(slots.tolist()) == list(range(batch.padded_rows))


def test_short_rows_are_zero_padded():
    ids = np.array([5, 6, 7], np.int32)
    batch = plan_batches(np.array([3]), 32, BucketSpec(boundaries=(4, 8)))[0]
    matrix, lengths = pad_batch(ids, np.array([0, 3]), batch, max_tokens=32, head_tokens=8)
    assert batch.width == 4
    assert matrix[0].tolist() == [5, 6, 7, 0] and lengths[0] == 3


@pytest.mark.slow
def test_host_workers_do_not_change_encoding_or_scores(tiny_bundle, reviews_table, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.parquet as pq

    from batchscore.inference.rows import MIN_SLICE_ROWS, encode_window
    from batchscore.model.bundle import load_bundle
    from tests.helpers import score_files

    bundle = load_bundle(tiny_bundle)
    texts = reviews_table.column("text").to_pylist() * 4
    texts[7], texts[500] = None, "   "  # rows with reasons keep their place
    table = pa.table({"text": texts})
    assert table.num_rows >= 2 * MIN_SLICE_ROWS
    one = encode_window(table, "text", bundle.vocab, bundle.tokenizer)
    with ThreadPoolExecutor(3) as pool:
        sliced = encode_window(table, "text", bundle.vocab, bundle.tokenizer, pool)
    assert one[0].equals(sliced[0]) and list(one[1]) == list(sliced[1])
    np.testing.assert_array_equal(one[2].ids, sliced[2].ids)
    np.testing.assert_array_equal(one[2].offsets, sliced[2].offsets)

    pq.write_table(table, tmp_path / "in.parquet")
    for workers in (1, 3):
        score_files([tmp_path / "in.parquet"], tmp_path / f"w{workers}.parquet", tiny_bundle,
                    host_workers=workers, max_error_rate=1.0)  # fmt: skip
    assert read_scores(tmp_path / "w1.parquet").equals(read_scores(tmp_path / "w3.parquet"))


def test_partial_batches_take_narrower_rows_into_their_padding():
    """Training's deterministic plan (batch counts, validation loss): a bucket's last batch fills its
    padding rows with shorter rows, never longer."""
    spec = BucketSpec(boundaries=(8, 16), token_budget=64 * 16, max_rows=64)
    lengths = np.array([16] * 10 + [8] * 70 + [3] * 5)
    batches = plan_batches(lengths, 16, spec)
    assert [(b.width, b.rows.size, b.padded_rows) for b in batches] == [(16, 64, 64), (8, 21, 64)]
    assert batches[0].rows.tolist() == list(range(64))  # the 10 long rows, then the first 54 of width 8
    for batch in batches:
        assert np.all(lengths[batch.rows] <= batch.width)
