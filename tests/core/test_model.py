"""The forward pass: true first/last states, independent of padding, bucket and batch-mates."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from batchscore.inference.batching import ROW_QUANTUM, BucketSpec
from batchscore.inference.forward import Scorer, Truncation
from batchscore.model.bilstm import (
    ModelConfig,
    batch_major_head_features,
    recur,
    recur_to_features,
    reverse_within_length,
)
from batchscore.model.bundle import load_bundle
from batchscore.model.network import forward_logits, init_params
from batchscore.text.encoding import encode


def test_reverse_within_length_leaves_padding_in_place():
    x = jnp.arange(10).reshape(2, 5)[:, :, None]
    out = reverse_within_length(x, jnp.array([3, 5]))[:, :, 0]
    assert out.tolist() == [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]]


def assert_padding_does_not_reach_logits(config: ModelConfig, seed: int) -> None:
    """Steps after a row's length never reach its logits, bit for bit. Rows come in a whole
    ROW_QUANTUM, as scoring batches do: on AVX2 a 7-row matmul rounds unlike a 16-row one."""
    params = init_params(config, seed)
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, config.vocab_size, size=(ROW_QUANTUM, 7)).astype(np.int32)
    lengths = rng.integers(1, 8, size=ROW_QUANTUM).astype(np.int32)
    alone = forward_logits(config, params, ids, lengths)
    junk = rng.integers(2, config.vocab_size, size=(ROW_QUANTUM, 9)).astype(np.int32)
    with_junk = forward_logits(config, params, np.concatenate([ids, junk], axis=1), lengths)
    np.testing.assert_array_equal(np.asarray(alone), np.asarray(with_junk))


def test_padding_does_not_change_logits():
    assert_padding_does_not_reach_logits(ModelConfig(vocab_size=50, embed_dim=4, hidden=5, num_layers=2), 0)


@pytest.mark.slow
def test_head_width_is_four_times_hidden_and_layers_are_stacked():
    config = ModelConfig(vocab_size=10, embed_dim=3, hidden=7, num_layers=3)
    params = init_params(config, 0)
    assert params["head"]["kernel"].shape == (28, 2)
    assert {k for k in params if k.startswith("lstm_")} == {"lstm_0", "lstm_1", "lstm_2"}
    assert params["lstm_1"]["w_input"].shape == (2, 14, 28)


def test_probabilities_do_not_depend_on_batch_mates_or_bucket(tiny_bundle, reviews_table):
    bundle = load_bundle(tiny_bundle)
    encoded = encode(reviews_table.column("text").combine_chunks(), bundle.vocab, bundle.tokenizer)
    truncation = Truncation(bundle.max_tokens, bundle.head_tokens)
    together = Scorer(bundle.model, bundle.params, truncation, BucketSpec(token_budget=4096)).logits(encoded)
    other = Scorer(
        bundle.model, bundle.params, truncation, BucketSpec(boundaries=(5, 17, 33), token_budget=512)
    )
    regrouped = other.logits(encoded)
    np.testing.assert_array_equal(together, regrouped)
    for row in (0, 7, 150, 299):
        alone = other.logits(encoded, np.array([row]))
        np.testing.assert_array_equal(alone[0], together[row])


def test_pooled_head_sees_real_positions_only():
    config = ModelConfig(vocab_size=50, embed_dim=4, hidden=5, num_layers=2, pooling=("max", "mean"))
    params = init_params(config, 0)
    assert params["head"]["kernel"].shape == (40, 2)  # first, last, max, mean: 4 x 2H
    assert_padding_does_not_reach_logits(config, 1)


def test_pooled_head_inference_path_matches_training_module(tiny_bundle):
    """The scorer's table-lookup, tanh-cell path agrees with the Flax module for a pooled head."""
    vocab_size = load_bundle(tiny_bundle).model.vocab_size
    config = ModelConfig(vocab_size=vocab_size, embed_dim=6, hidden=5, num_layers=2, pooling=("mean", "max"))
    params = init_params(config, 4)
    rng = np.random.default_rng(2)
    lengths = np.array([1, 4, 9, 13], np.int32)
    ids = rng.integers(2, vocab_size, size=(4, 13)).astype(np.int32)
    reference = np.asarray(forward_logits(config, params, ids, lengths))
    truncation = Truncation(64, 16)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.concatenate([ids[i, : lengths[i]] for i in range(4)]).astype(np.int32)
    from batchscore.text.encoding import Encoded

    scored = Scorer(config, params, truncation, BucketSpec(boundaries=(16,))).logits(Encoded(flat, offsets))
    np.testing.assert_allclose(scored, reference, atol=2e-6)


def test_last_layer_features_gathered_in_the_scan_equal_those_of_the_stored_outputs():
    """recur_to_features (inference and training) against the outputs themselves, re-ordered."""
    rng = np.random.default_rng(5)
    steps, rows, hidden = 9, 6, 3
    gates = tuple(jnp.asarray(rng.normal(size=(steps, rows, 4 * hidden)), jnp.float32) for _ in range(2))
    w_hidden = jnp.asarray(rng.normal(size=(2, hidden, 4 * hidden)) * 0.5, jnp.float32)
    lengths = jnp.asarray([1, 2, 5, 9, 9, 3], jnp.int32)
    for prescaled in (True, False):
        outputs = recur(gates, w_hidden, prescaled=prescaled)  # (T, 2, B, H)
        forward = jnp.transpose(outputs[:, 0], (1, 0, 2))
        backward = reverse_within_length(jnp.transpose(outputs[:, 1], (1, 0, 2)), lengths)
        in_order = jnp.concatenate([forward, backward], axis=-1)  # (B, T, 2H), input order
        for pooling in ((), ("max",), ("mean", "max")):
            expected = batch_major_head_features(in_order, lengths, pooling)
            got = recur_to_features(gates, w_hidden, lengths, pooling, prescaled=prescaled)
            np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-6, atol=1e-6)
    assert expected.shape == (rows, 2 * hidden * 4)
