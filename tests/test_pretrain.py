"""Language-model pretraining: no direction sees its target, the loss learns what is predictable,
the classifier starts from the pretrained layers, and an interrupted pretraining resumes exactly."""

from __future__ import annotations

import random

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from batchscore.bundle import save_bundle
from batchscore.cli import main
from batchscore.datasets import LabeledData, split_validation
from batchscore.embeddings import load_word_vectors
from batchscore.errors import UsageError
from batchscore.model import ModelConfig, init_params
from batchscore.pretrain import (
    classifier_start,
    direction_outputs,
    init_lm_head,
    lm_loss,
    lm_parameters,
    sampling_distribution,
)
from batchscore.runner import model_card_text
from tests.test_train import (
    FILLER,
    QUIET,
    _small_config,
    _toy_split,
    interrupted_then_resumed,
    train,
    write_glove,
)

IDS = np.array([[3, 4, 5, 6, 7, 8, 0, 0], [9, 10, 11, 12, 13, 14, 15, 16]], np.int32)
LENGTHS = np.array([6, 8], np.int32)


def _outputs(params: dict, ids: np.ndarray) -> np.ndarray:
    return np.asarray(direction_outputs(params, jnp.asarray(ids), jnp.asarray(LENGTHS), None))


def test_no_direction_sees_the_token_it_will_be_asked_for():
    """Changing the token at position 4 changes the forward outputs from position 4 on and the backward
    outputs from that token's place in the reversed reading on, and nothing before: the next-token
    task cannot be solved by copying, in either layer."""
    params = init_params(ModelConfig(vocab_size=30, embed_dim=6, hidden=8), 0)
    changed = IDS.copy()
    changed[:, 4] = 20
    before, after = _outputs(params, IDS), _outputs(params, changed)  # (T, 2, B, H)
    for row, length in enumerate(LENGTHS):
        reversed_step = length - 1 - 4
        np.testing.assert_array_equal(before[:4, 0, row], after[:4, 0, row])
        np.testing.assert_array_equal(before[:reversed_step, 1, row], after[:reversed_step, 1, row])
        assert not np.allclose(before[4, 0, row], after[4, 0, row])
        assert not np.allclose(before[reversed_step, 1, row], after[reversed_step, 1, row])


def test_loss_scores_real_targets_only_and_its_gradient_is_finite():
    params = init_params(ModelConfig(vocab_size=30, embed_dim=6, hidden=8), 0)
    unigram = sampling_distribution(IDS[IDS > 0], 30)
    assert unigram[:2].sum() == 0.0  # <pad> and <unk> are never drawn
    head = init_lm_head(8, 6, unigram, 0)
    log_expected = jnp.asarray(np.log(np.maximum(16 * unigram, 1e-30)), jnp.float32)
    negatives = jnp.asarray(np.random.default_rng(0).choice(30, 16, p=unigram).astype(np.int32))
    with_unk = IDS.copy()
    with_unk[1, 3] = 1  # <unk>: not a target in either direction

    def loss(p, ids):
        return lm_loss(p, head, jnp.asarray(ids), jnp.asarray(LENGTHS), negatives, log_expected, None)

    assert int(loss(params, IDS)[1]) == 2 * (5 + 7)  # every real step after the first, both directions
    assert int(loss(params, with_unk)[1]) == 2 * (5 + 7) - 2
    grads = jax.grad(lambda p: loss(p, IDS)[0])(lm_parameters(params))
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree_util.tree_leaves(grads))
    cross = grads["lstm_1"]["w_input"]
    assert float(jnp.abs(cross[0, 8:]).max()) == 0.0 and float(jnp.abs(cross[1, :8]).max()) == 0.0


def test_classifier_starts_from_the_pretrained_layers_with_directions_unmixed():
    config = ModelConfig(vocab_size=30, embed_dim=6, hidden=8)
    pretrained, fresh = init_params(config, 1), init_params(config, 2)
    start = classifier_start(lm_parameters(pretrained), fresh)
    np.testing.assert_array_equal(start["embedding"]["embedding"], pretrained["embedding"]["embedding"])
    np.testing.assert_array_equal(start["lstm_0"]["w_input"], pretrained["lstm_0"]["w_input"])
    np.testing.assert_array_equal(start["head"]["kernel"], fresh["head"]["kernel"])
    w_input = np.asarray(start["lstm_1"]["w_input"])
    assert not w_input[0, 8:].any() and not w_input[1, :8].any()
    np.testing.assert_array_equal(w_input[0, :8], pretrained["lstm_1"]["w_input"][0, :8])
    np.testing.assert_array_equal(w_input[1, 8:], pretrained["lstm_1"]["w_input"][1, 8:])


def _counting_texts(rows: int, seed: int) -> LabeledData:
    """Texts that walk the filler words in a fixed cycle from a random start: each next word is
    fully predictable from the one before, in both directions."""
    rng = random.Random(seed)
    texts = []
    for _ in range(rows):
        start, length = rng.randrange(len(FILLER)), rng.randint(6, 30)
        texts.append(" ".join(FILLER[(start + i) % len(FILLER)] for i in range(length)))
    labels = np.array([i % 2 for i in range(rows)], np.int8)
    return LabeledData(pa.array(texts), labels, "cycle")


def test_pretraining_learns_a_predictable_sequence(tmp_path):
    vectors = load_word_vectors(str(write_glove(tmp_path / "g.txt", dim=6)))
    train_part, valid_part = split_validation(_counting_texts(2000, 0), 0.2, seed=0)
    config = _small_config(lm_pretrain_epochs=4, epochs=1, learning_rate=3e-2)
    result = train(train_part, valid_part, vectors, config, tmp_path / "ckpt", **QUIET)
    history = result.bundle.card["lm_pretraining"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    # ten equally common words: a model that knows only their frequencies scores about log(10) ~ 2.3
    # above the best case; the cycle makes every next word certain
    assert history[-1]["valid_loss"] < 0.5 * history[0]["valid_loss"]
    assert history[-1]["valid_loss"] < 1.0
    card = result.bundle.card
    assert card["training_seconds"] >= card["lm_pretraining"]["seconds"] > 0  # both stages counted
    assert "pretrain   4 language-model epochs" in model_card_text(result.bundle)


def test_interrupted_pretraining_resumes_exactly(tmp_path):
    vectors, train_part, valid_part = _toy_split(tmp_path, rows=300, seed=1)
    config = _small_config(lm_pretrain_epochs=2, epochs=2)
    straight = train(train_part, valid_part, vectors, config, tmp_path / "a", **QUIET)

    # logged after the pretraining epoch's checkpoint is saved
    stop_at = "language model epoch 1:"
    resumed = interrupted_then_resumed(train_part, valid_part, vectors, config, tmp_path / "b", stop_at)
    assert resumed.bundle.card["lm_pretraining"] == {
        **straight.bundle.card["lm_pretraining"],
        "seconds": resumed.bundle.card["lm_pretraining"]["seconds"],
        "history": [
            {**h, "seconds": r["seconds"]}
            for h, r in zip(
                straight.bundle.card["lm_pretraining"]["history"],
                resumed.bundle.card["lm_pretraining"]["history"],
                strict=True,
            )
        ],
    }
    assert [h["valid_loss"] for h in resumed.history] == [h["valid_loss"] for h in straight.history]
    for name, layer in straight.bundle.params.items():
        for key, value in layer.items():
            np.testing.assert_array_equal(value, resumed.bundle.params[name][key])


def test_pretraining_option_is_checked(tmp_path):
    vectors, train_part, valid_part = _toy_split(tmp_path, rows=200, seed=2)
    plain = train(train_part, valid_part, vectors, _small_config(epochs=1), tmp_path / "a", **QUIET)
    save_bundle(plain.bundle, tmp_path / "model")
    config = _small_config(epochs=1, lm_pretrain_epochs=1, init_model=str(tmp_path / "model"))
    with pytest.raises(UsageError, match="--lm-pretrain-epochs"):
        train(train_part, valid_part, vectors, config, tmp_path / "b", **QUIET)
    arguments = ["train", "--train", str(tmp_path), "-o", str(tmp_path / "m"), "--lm-pretrain-epochs", "-1"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 2 and "--lm-pretrain-epochs" in result.output
