"""Language-model pretraining: no direction sees its target, the loss learns what is predictable,
the classifier starts from the pretrained layers, and an interrupted pretraining resumes exactly."""

from __future__ import annotations

import hashlib
import json
import random

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from batchscore.base.errors import InputError, UsageError
from batchscore.interfaces.cli import main
from batchscore.interfaces.model_commands import model_card_text
from batchscore.model.bilstm import ModelConfig
from batchscore.model.bundle import load_bundle, save_bundle
from batchscore.model.language_model import (
    classifier_start,
    direction_outputs,
    init_lm_head,
    lm_loss,
    lm_parameters,
    sampling_distribution,
)
from batchscore.model.network import init_params
from batchscore.training.datasets import (
    DataError,
    LabeledData,
    UnlabeledText,
    read_unlabeled,
    split_validation,
)
from batchscore.training.embeddings import load_word_vectors
from batchscore.training.trainer import train
from tests.helpers import QUIET
from tests.training.toys import (
    FILLER,
    interrupted_then_resumed,
    small_config,
    toy_reviews,
    toy_split,
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_pretraining_learns_a_predictable_sequence(tmp_path):
    vectors = load_word_vectors(str(write_glove(tmp_path / "g.txt", dim=6)))
    train_part, valid_part = split_validation(_counting_texts(2000, 0), 0.2, seed=0)
    config = small_config(lm_pretrain_epochs=4, epochs=1, learning_rate=3e-2)
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


@pytest.mark.slow
def test_interrupted_pretraining_resumes_exactly(tmp_path):
    vectors, train_part, valid_part = toy_split(tmp_path, rows=300, seed=1)
    config = small_config(lm_pretrain_epochs=2, epochs=2)
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


@pytest.mark.slow
def test_a_finished_pretraining_serves_another_classifier_schedule(tmp_path):
    """Copying a run's language-model checkpoint into a new directory and resuming with other
    --epochs or --average-epochs skips the pretraining and gives the weights a fresh run would."""
    import shutil

    vectors, train_part, valid_part = toy_split(tmp_path, rows=300, seed=4)
    short = small_config(lm_pretrain_epochs=2, epochs=1)
    train(train_part, valid_part, vectors, short, tmp_path / "a", **QUIET)
    longer = small_config(lm_pretrain_epochs=2, epochs=2, average_epochs=True)
    fresh = train(train_part, valid_part, vectors, longer, tmp_path / "fresh", **QUIET)

    shutil.copytree(tmp_path / "a" / "language-model", tmp_path / "b" / "language-model")
    logged: list[str] = []
    reused = train(
        train_part,
        valid_part,
        vectors,
        longer,
        tmp_path / "b",
        resume=True,
        progress=False,
        log=logged.append,
    )
    assert not [line for line in logged if line.startswith("language model epoch")]  # not retrained
    assert reused.bundle.card["lm_pretraining"]["history"] == [
        {**h, "seconds": r["seconds"]}
        for h, r in zip(
            fresh.bundle.card["lm_pretraining"]["history"],
            reused.bundle.card["lm_pretraining"]["history"],
            strict=True,
        )
    ]
    for name, layer in fresh.bundle.params.items():
        for key, value in layer.items():
            np.testing.assert_array_equal(value, reused.bundle.params[name][key])

    # any setting the pretraining reads still refuses the checkpoint
    other = small_config(lm_pretrain_epochs=2, epochs=2, learning_rate=2e-2)
    shutil.copytree(tmp_path / "a" / "language-model", tmp_path / "c" / "language-model")
    with pytest.raises(UsageError, match="different settings"):
        train(train_part, valid_part, vectors, other, tmp_path / "c", resume=True, **QUIET)


@pytest.mark.slow
def test_pretraining_option_is_checked(tmp_path):
    vectors, train_part, valid_part = toy_split(tmp_path, rows=200, seed=2)
    plain = train(train_part, valid_part, vectors, small_config(epochs=1), tmp_path / "a", **QUIET)
    save_bundle(plain.bundle, tmp_path / "model")
    config = small_config(epochs=1, lm_pretrain_epochs=1, init_model=str(tmp_path / "model"))
    with pytest.raises(UsageError, match="--lm-pretrain-epochs"):
        train(train_part, valid_part, vectors, config, tmp_path / "b", **QUIET)
    arguments = ["train", "--train", str(tmp_path), "-o", str(tmp_path / "m"), "--lm-pretrain-epochs", "-1"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 2 and "--lm-pretrain-epochs" in result.output


UNLABELED_ONLY = ["cinematography", "screenplay", "soundtrack"]  # words no training text holds


def _unlabeled_files(tmp_path):
    """The same kind of text as Parquet, as CSV with bad rows, and as aclImdb-style .txt files."""
    texts = [" ".join([*UNLABELED_ONLY, *FILLER[: 3 + i % 5]]) for i in range(40)]
    pq.write_table(pa.table({"id": list(range(40)), "text": texts}), tmp_path / "extra.parquet")
    (tmp_path / "extra.csv").write_bytes(
        b'review,stars\n"a screenplay and a soundtrack",5\n,3\n"   ",2\n'
        b'"caf\xe9 screenplay",4\n"the plot",1\n'
    )
    folder = tmp_path / "unsup"
    folder.mkdir()
    for number, text in [(10, "the soundtrack"), (2, "a screenplay"), (1, "the cinematography")]:
        (folder / f"{number}_0.txt").write_text(text)
    return texts


def test_unlabeled_text_is_read_as_scoring_reads_it_and_accounted_for(tmp_path):
    """Parquet and CSV through the scoring readers (any text column), an aclImdb unsup folder in id
    order; null, blank and invalid-UTF-8 rows are skipped and counted, never silently; each file's
    sha256 is recorded."""
    texts = _unlabeled_files(tmp_path)
    parquet = read_unlabeled([tmp_path / "extra.parquet"])
    assert parquet.texts.to_pylist() == texts
    expected_sha = hashlib.sha256((tmp_path / "extra.parquet").read_bytes()).hexdigest()
    assert parquet.sources == [
        {
            "source": str(tmp_path / "extra.parquet"),
            "rows_read": 40,
            "rows": 40,
            "skipped": {},
            "sha256": expected_sha,
        }
    ]
    csv = read_unlabeled([str(tmp_path / "extra.csv")], text_column="review")
    assert csv.texts.to_pylist() == ["a screenplay and a soundtrack", "the plot"]
    assert csv.sources[0]["rows_read"] == 5 and csv.sources[0]["rows"] == 2
    assert csv.sources[0]["skipped"] == {"blank text": 2, "invalid UTF-8": 1}  # CSV has no nulls
    folder = read_unlabeled([tmp_path / "unsup"])
    assert folder.texts.to_pylist() == ["the cinematography", "a screenplay", "the soundtrack"]
    both = read_unlabeled([tmp_path / "extra.parquet", tmp_path / "unsup"])
    assert len(both) == 43 and [s["rows"] for s in both.sources] == [40, 3]
    with pytest.raises(InputError, match="no text column 'text'"):
        read_unlabeled([tmp_path / "extra.csv"])
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "numbers.parquet")
    with pytest.raises(DataError, match=r"numbers\.parquet: column 'text' has type int64"):
        read_unlabeled([tmp_path / "numbers.parquet"])
    pq.write_table(pa.table({"text": pa.array([None, " "], pa.string())}), tmp_path / "blank.parquet")
    with pytest.raises(DataError, match=r"blank\.parquet: no usable text \(2 rows read"):
        read_unlabeled([tmp_path / "blank.parquet"])
    pq.write_table(pa.table({"text": pa.array([None, " ", "the plot"], pa.string())}), tmp_path / "b.parquet")
    assert read_unlabeled([tmp_path / "b.parquet"]).sources[0]["skipped"] == {"null text": 1, "blank text": 1}


@pytest.mark.slow
def test_pretraining_reads_the_unlabeled_text_and_the_card_says_so(tmp_path):
    """The language model reads the unlabeled rows too, their words join the vocabulary, a text that
    is also a validation row is left out, and the card records files, rows and sha256."""
    vectors, train_part, valid_part = toy_split(tmp_path, rows=300, seed=1)
    texts = _unlabeled_files(tmp_path)
    extra = read_unlabeled([tmp_path / "extra.parquet"])
    extra = UnlabeledText(pa.concat_arrays([extra.texts, valid_part.texts.slice(0, 5)]), extra.sources)
    config = small_config(lm_pretrain_epochs=1, epochs=1)
    plain = train(train_part, valid_part, vectors, config, tmp_path / "a", **QUIET)
    pretrained = train(train_part, valid_part, vectors, config, tmp_path / "b", **QUIET, lm_text=extra)
    assert not any(word in plain.bundle.vocab.tokens for word in UNLABELED_ONLY)
    assert all(word in pretrained.bundle.vocab.tokens for word in UNLABELED_ONLY)
    record = pretrained.bundle.card["lm_pretraining"]["lm_data"]
    assert record["rows"] == len(texts) and record["left_out_as_training_or_validation_text"] == 5
    assert record["sources"] == extra.sources and "training and unlabeled text" in record["vocabulary"]
    assert "lm_data" not in plain.bundle.card["lm_pretraining"]
    assert (
        plain.bundle.card["lm_pretraining"]["history"] != pretrained.bundle.card["lm_pretraining"]["history"]
    )


@pytest.mark.slow
def test_pretraining_on_unlabeled_text_resumes_exactly_and_only_on_the_same_text(tmp_path):
    vectors, train_part, valid_part = toy_split(tmp_path, rows=300, seed=1)
    _unlabeled_files(tmp_path)
    extra = read_unlabeled([tmp_path / "extra.parquet"])
    config = small_config(lm_pretrain_epochs=2, epochs=1)
    straight = train(train_part, valid_part, vectors, config, tmp_path / "a", **QUIET, lm_text=extra)
    resumed = interrupted_then_resumed(
        train_part, valid_part, vectors, config, tmp_path / "b", "language model epoch 1:", lm_text=extra
    )
    for name, layer in straight.bundle.params.items():
        for key, value in layer.items():
            np.testing.assert_array_equal(value, resumed.bundle.params[name][key])
    other = read_unlabeled([tmp_path / "unsup"])
    with pytest.raises(UsageError, match="other --lm-data"):
        train(train_part, valid_part, vectors, config, tmp_path / "b", resume=True, **QUIET, lm_text=other)


@pytest.mark.slow
def test_train_command_with_lm_data(tmp_path):
    """--lm-data on the command line: read, recorded in the card; without pretraining it is refused
    before any work."""
    pq.write_table(toy_reviews(200, 3), tmp_path / "train.parquet")
    glove = write_glove(tmp_path / "g.txt", dim=5)
    _unlabeled_files(tmp_path)
    base = ["train", "--train", tmp_path / "train.parquet", "--embeddings", glove, "--epochs", "1"]
    base += ["--hidden", "8", "--max-tokens", "32", "--head-tokens", "8", "--min-count", "1", "--no-progress"]
    refused = CliRunner().invoke(
        main, [str(a) for a in [*base, "-o", tmp_path / "m1", "--lm-data", tmp_path / "unsup"]]
    )
    assert refused.exit_code == 2 and "add --lm-pretrain-epochs" in refused.output
    assert not (tmp_path / "m1").exists()
    args = [*base, "-o", tmp_path / "m2", "--lm-pretrain-epochs", "1", "--lm-data", tmp_path / "unsup"]
    args += ["--lm-data", tmp_path / "extra.parquet"]
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "language-model text: 43 unlabeled rows from 2 file(s)" in result.output
    card = json.loads((tmp_path / "m2" / "config.json").read_text())["card"]
    assert [s["rows"] for s in card["lm_pretraining"]["lm_data"]["sources"]] == [3, 40]
    assert "soundtrack" in load_bundle(tmp_path / "m2").vocab.tokens
