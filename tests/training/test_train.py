"""Training end to end on a tiny generated task, GloVe text files, resume, and evaluation maths."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from batchscore.base.errors import InputError, UsageError
from batchscore.interfaces.cli import main
from batchscore.interfaces.model_commands import predict_texts
from batchscore.model.bilstm import ModelConfig
from batchscore.model.bundle import load_bundle, save_bundle
from batchscore.model.network import SentimentBiLSTM, init_params
from batchscore.model.probabilities import softmax
from batchscore.text.vocab import Vocab
from batchscore.training.datasets import read_labeled, split_validation
from batchscore.training.embeddings import embedding_matrix, load_word_vectors
from batchscore.training.evaluate import (
    classification_report,
    expected_calibration_error,
    fit_temperature,
    paired_comparison,
    roc_auc,
)
from batchscore.training.selection import greedy_epoch_average
from batchscore.training.steps import adversarial_push, drop_recurrent_weights
from batchscore.training.trainer import train
from tests.helpers import QUIET, Crash, crash_after
from tests.training.toys import (
    interrupted_then_resumed,
    labeled,
    small_config,
    toy_reviews,
    toy_split,
    write_glove,
)


def test_glove_text_file_of_any_dimension(tmp_path):
    vectors = load_word_vectors(str(write_glove(tmp_path / "g.txt", dim=7)))
    assert vectors.dim == 7 and len(vectors.words) == 22
    vocab = Vocab(["<pad>", "<unk>", "Great", "unseen"])
    init = embedding_matrix(vocab, vectors, seed=0)
    assert init.matrix.shape == (4, 7)
    assert init.found.tolist() == [False, False, True, False]  # lookup is lowercase
    row = vectors.words.to_pylist().index("great")
    np.testing.assert_array_equal(init.matrix[2], vectors.vectors[row])
    assert not init.matrix[0].any()  # padding row is zero


def test_glove_file_with_punctuation_words(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("\" 0.1 0.2\n# 0.3 0.4\n\\ 0.5 0.6\nn't 0.7 0.8\n")
    vectors = load_word_vectors(str(path))
    assert vectors.words.to_pylist() == ['"', "#", "\\", "n't"]
    np.testing.assert_allclose(vectors.vectors[3], [0.7, 0.8])


def test_bad_glove_file_is_reported(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("a 0.1 0.2\nb 0.3\n")
    with pytest.raises(InputError, match=r"g\.txt"):
        load_word_vectors(str(path))


def test_training_learns_a_separable_task(tmp_path):
    vectors = load_word_vectors(str(write_glove(tmp_path / "g.txt", dim=6)))
    data = labeled(toy_reviews(600, 0), "toy")
    train_part, valid_part = split_validation(data, 0.2, seed=0)
    result = train(
        train_part,
        valid_part,
        vectors,
        small_config(),
        tmp_path / "ckpt",
        progress=False,
        log=lambda m: None,
    )
    assert result.valid_report["accuracy"] > 0.9
    test = labeled(toy_reviews(200, 99), "toy-test")
    scores = predict_texts(test.texts.to_pylist(), result.bundle)
    accuracy = np.mean(
        [(s["label"] == "positive") == bool(y) for s, y in zip(scores, test.labels, strict=True)]
    )
    assert accuracy > 0.85  # chance is 0.5


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path):
    vectors = load_word_vectors(str(write_glove(tmp_path / "g.txt", dim=6)))
    data = labeled(toy_reviews(300, 1), "toy")
    train_part, valid_part = split_validation(data, 0.2, seed=0)
    quiet = dict(progress=False, log=lambda m: None)
    config = small_config(ema_decay=0.9, token_dropout=0.1, embed_lr_scale=0.5)  # every option in play
    straight = train(train_part, valid_part, vectors, config, tmp_path / "a", **quiet)

    # "epoch 1:" is logged right after the epoch's checkpoint is saved
    resumed = interrupted_then_resumed(train_part, valid_part, vectors, config, tmp_path / "b", "epoch 1:")
    assert [h["valid_loss"] for h in resumed.history] == [h["valid_loss"] for h in straight.history]
    for name in ("embedding", "head"):
        for key, value in straight.bundle.params[name].items():
            np.testing.assert_array_equal(value, resumed.bundle.params[name][key])
    # resuming that checkpoint with another setting would mix two runs in one bundle: refused
    with pytest.raises(UsageError, match="different settings"):
        changed = dataclasses.replace(config, dropout=0.3)
        train(train_part, valid_part, vectors, changed, tmp_path / "b", resume=True, **quiet)


@pytest.mark.slow
def test_crash_inside_a_checkpoint_commit_resumes_exactly(tmp_path, monkeypatch):
    """Killed after the new arrays are on disk but before state.json: the previous epoch stays whole."""
    vectors = load_word_vectors(str(write_glove(tmp_path / "g.txt", dim=6)))
    data = labeled(toy_reviews(300, 1), "toy")
    train_part, valid_part = split_validation(data, 0.2, seed=0)
    quiet = dict(progress=False, log=lambda m: None)
    config = small_config(ema_decay=0.9)
    straight = train(train_part, valid_part, vectors, config, tmp_path / "a", **quiet)

    from batchscore.io import writers

    # the second epoch's arrays are written, its state.json is not
    monkeypatch.setattr(writers, "commit_hook", crash_after("arrays written", 2))
    with pytest.raises(Crash):
        train(train_part, valid_part, vectors, config, tmp_path / "b", **quiet)
    monkeypatch.setattr(writers, "commit_hook", None)
    resumed = train(train_part, valid_part, vectors, config, tmp_path / "b", resume=True, **quiet)
    assert [h["valid_loss"] for h in resumed.history] == [h["valid_loss"] for h in straight.history]
    for key, value in straight.bundle.params["head"].items():
        np.testing.assert_array_equal(value, resumed.bundle.params["head"][key])
    assert len(list((tmp_path / "b").glob("arrays*.safetensors"))) == 1


def test_same_seed_same_metrics(tmp_path):
    vectors = load_word_vectors(str(write_glove(tmp_path / "g.txt", dim=6)))
    data = labeled(toy_reviews(200, 2), "toy")
    train_part, valid_part = split_validation(data, 0.25, seed=0)
    quiet = dict(progress=False, log=lambda m: None)
    first = train(train_part, valid_part, vectors, small_config(epochs=1), tmp_path / "a", **quiet)
    second = train(train_part, valid_part, vectors, small_config(epochs=1), tmp_path / "b", **quiet)
    assert first.history[0]["valid_loss"] == second.history[0]["valid_loss"]
    assert first.history[0]["train_loss"] == second.history[0]["train_loss"]


@pytest.mark.slow
def test_train_and_evaluate_commands(tmp_path):
    pq.write_table(toy_reviews(300, 3), tmp_path / "train.parquet")
    pq.write_table(toy_reviews(100, 4), tmp_path / "test.parquet")
    glove = write_glove(tmp_path / "g.txt", dim=5)
    args = [
        "train",
        "--train",
        tmp_path / "train.parquet",
        "--test",
        tmp_path / "test.parquet",
        "--embeddings",
        glove,
        "-o",
        tmp_path / "model",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--hidden",
        "8",
        "--max-tokens",
        "32",
        "--head-tokens",
        "8",
        "--min-count",
        "1",
        "--no-progress",
    ]
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    bundle = load_bundle(tmp_path / "model")
    assert bundle.model.embed_dim == 5 and bundle.card["seed"] == 0
    assert bundle.name == "model"  # its own name, not the bundled model's
    assert bundle.card["command"].startswith("batchscore ") and "test_metrics" in bundle.card
    assert (tmp_path / "model.checkpoint" / "state.json").exists()
    evaluated = CliRunner().invoke(
        main, ["evaluate", str(tmp_path / "test.parquet"), "--model", str(tmp_path / "model")]
    )
    assert evaluated.exit_code == 0 and "accuracy" in evaluated.output and "confusion" in evaluated.output
    model = str(tmp_path / "model")
    against_itself = CliRunner().invoke(
        main,
        ["evaluate", str(tmp_path / "test.parquet"), "--json", "--model", model, "--against", model],
    )
    assert against_itself.exit_code == 0, against_itself.output
    report = json.loads(against_itself.output)
    comparison = report["comparison"]
    assert comparison["rows"] == 100 and comparison["difference"] == 0 and comparison["mcnemar_p"] == 1
    assert comparison["accuracy"] == comparison["other_accuracy"] == report["accuracy"]
    # a file of one label only (all the positive reviews of a day): ROC-AUC is undefined, and the
    # report stays strict JSON (null, not NaN, which jq and JavaScript refuse)
    positives = pq.read_table(tmp_path / "test.parquet").filter(pc.equal(pc.field("label"), 1))
    pq.write_table(positives, tmp_path / "positive.parquet")
    positive = str(tmp_path / "positive.parquet")
    one_label = CliRunner().invoke(main, ["evaluate", positive, "--json", "--model", model])
    assert one_label.exit_code == 0, one_label.output
    strict = json.loads(one_label.output, parse_constant=lambda name: pytest.fail(f"{name} in --json output"))
    assert strict["roc_auc"] is None and strict["rows"] == positives.num_rows
    text = CliRunner().invoke(main, ["evaluate", positive, "--model", model])
    assert "ROC-AUC n/a" in text.output


def test_aclimdb_folder_layout(tmp_path):
    for label, words in (("pos", "great film"), ("neg", "awful film")):
        folder = tmp_path / "aclImdb" / "train" / label
        folder.mkdir(parents=True)
        for i, rating in enumerate((8, 9) if label == "pos" else (1, 2)):
            (folder / f"{i}_{rating}.txt").write_text(f"{words} number {i}")
    data = read_labeled(tmp_path / "aclImdb")
    assert data.labels.tolist() == [0, 0, 1, 1]
    assert data.texts.to_pylist()[2] == "great film number 0"


def test_string_labels_and_bad_labels(tmp_path):
    labels = ["Positive", "negative", " pos", "NEG"]
    pq.write_table(pa.table({"text": ["a", "b", "c", "d"], "label": labels}), tmp_path / "ok.parquet")
    assert read_labeled(tmp_path / "ok.parquet").labels.tolist() == [1, 0, 1, 0]
    pq.write_table(pa.table({"text": ["a", "b"], "label": ["positive", "meh"]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"bad.parquet: row 1: column 'label'"):
        read_labeled(tmp_path / "bad.parquet")
    empty = pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.int8())})
    pq.write_table(empty, tmp_path / "empty.parquet")
    with pytest.raises(InputError, match=r"empty.parquet: no rows"):
        read_labeled(tmp_path / "empty.parquet")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["positive"] * 40, "the training rows hold one label only (0 negative, 36 positive)"),
        (["positive", "meh"] * 20, "row 1: column 'label' is not 0/1"),
    ],
)
def test_train_command_refuses_unusable_labels_in_one_line(tmp_path, labels, message):
    """Exit 3 (bad input) with the file named, no traceback, and no bundle that looks trained."""
    table = toy_reviews(40, 5).set_column(1, "label", pa.array(labels))
    pq.write_table(table, tmp_path / "train.parquet")
    glove = write_glove(tmp_path / "g.txt", dim=5)
    args = ["train", "--train", tmp_path / "train.parquet", "--embeddings", glove, "-o", tmp_path / "m"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 3, result.output
    assert "train.parquet" in result.output and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "ragged.csv",
            'label,text\n1,"good\nfilm"\n0,bad film\n1,"ok, fine",extra\n0,nice\n',
            "CSV parse error in row 2 (counted from 0 after the header, like the output's row column; "
            "record 4 of the file): expected 2 columns, got 3: '1,\"ok, fine\",extra'",
        ),
        ("corrupt.parquet", "not parquet at all", "not a readable Parquet file"),
    ],
)
def test_unreadable_labeled_data_is_a_data_error_naming_file_and_row(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError) as raised:
        read_labeled(tmp_path / name)
    assert str(raised.value).startswith(f"{tmp_path / name}: ") and message in str(raised.value)
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / name)])
    assert result.exit_code == 3 and message in result.output and "Traceback" not in result.output


def test_labeled_csv_keeps_newlines_inside_quoted_texts(tmp_path):
    texts = [f"review {i} line one\nline two, with a comma" for i in range(40000)]  # 2 MB: past a block
    rows = "".join(f'{i % 2},"{text}"\n' for i, text in enumerate(texts))
    (tmp_path / "l.csv").write_text("label,text\n" + rows)
    data = read_labeled(tmp_path / "l.csv")
    assert data.texts.to_pylist() == texts and data.labels.tolist() == [i % 2 for i in range(40000)]


def test_metrics_match_hand_computation():
    labels = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    probs = np.array([0.9, 0.8, 0.4, 0.3, 0.6, 0.1, 0.7, 0.2])
    report = classification_report(probs, labels, n_tokens=np.array([10, 10, 10, 10, 300, 300, 300, 300]))
    # predictions: 1 1 0 0 1 0 1 0 -> TP=3 FN=1 FP=1 TN=3
    assert report["accuracy"] == 6 / 8
    assert report["confusion_matrix"]["rows_true_cols_pred"] == [[3, 1], [1, 3]]
    assert report["per_class"]["positive"]["precision"] == 3 / 4
    assert report["per_class"]["positive"]["recall"] == 3 / 4
    assert report["per_class"]["negative"]["f1"] == pytest.approx(3 / 4)
    # AUC: of 16 (pos, neg) pairs, the positive scores higher in 14 (0.4 loses to 0.6, 0.4 beats 0.3,0.1,0.2)
    assert roc_auc(probs, labels) == pytest.approx(15 / 16)
    assert [b["accuracy"] for b in report["accuracy_by_length"]] == [0.75, 0.75]


def test_paired_comparison_counts_only_the_rows_the_models_disagree_on():
    labels = np.array([1] * 60 + [0] * 40)
    sure = np.where(labels == 1, 0.9, 0.1)
    worse = sure.copy()
    worse[:10] = 0.2  # ten positives the second model gets wrong
    worse[60:62] = 0.8  # two negatives it also gets wrong
    better = paired_comparison(sure, worse, labels)
    assert (better["only_this_right"], better["only_other_right"]) == (12, 0)
    assert better["accuracy"] == 1.0 and better["other_accuracy"] == pytest.approx(0.88)
    assert better["difference"] == pytest.approx(0.12)
    assert better["mcnemar_p"] == pytest.approx(2 * 0.5**12)  # exact: all 12 disagreements one way
    low, high = better["difference_ci95"]
    assert 0 < low < 0.12 < high
    reverse = paired_comparison(worse, sure, labels)
    assert reverse["difference"] == pytest.approx(-0.12) and reverse["mcnemar_p"] == better["mcnemar_p"]
    # as many disagreements each way: no evidence either way, whatever the counts
    first_wrong, second_wrong = sure.copy(), sure.copy()
    first_wrong[:6] = 0.3
    second_wrong[6:12] = 0.3
    split = paired_comparison(first_wrong, second_wrong, labels)
    assert split["difference"] == 0 and split["mcnemar_p"] == 1.0


def test_ece_and_temperature():
    labels = np.array([1, 0, 1, 1])
    probs = np.array([0.9, 0.9, 0.6, 0.6])  # predicted 1,1,1,1; correct 1,0,1,1
    # bins: conf 0.9 -> acc 0.5 (gap 0.4, weight .5); conf 0.6 -> acc 1.0 (gap 0.4, weight .5)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.4)
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 2, 20_000)
    y = (rng.random(20_000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    overconfident = np.stack([np.zeros_like(true_logit), 3.0 * true_logit], axis=1)
    temperature = fit_temperature(overconfident, y)
    assert temperature == pytest.approx(3.0, rel=0.1)
    fixed = softmax(overconfident, temperature)[:, 1]
    assert expected_calibration_error(fixed, y) < expected_calibration_error(softmax(overconfident)[:, 1], y)


def test_greedy_epoch_average_keeps_only_epochs_that_do_not_hurt_validation():
    weights = {e: {"w": np.full(2, float(e))} for e in (1, 2, 3, 4)}
    history = [{"epoch": e, "valid_accuracy": a} for e, a in [(1, 0.70), (2, 0.80), (3, 0.82), (4, 0.81)]]

    def valid_accuracy(candidate: dict) -> float:  # peaks when the averaged weight is 3.5
        return 0.9 - abs(float(candidate["w"][0]) - 3.5) / 10

    average, report = greedy_epoch_average(history, 3, weights.__getitem__, valid_accuracy)
    # 3 alone (0.82); + 4 -> mean 3.5 (0.90, kept); + 2 -> 3.0 (0.85, dropped); + 1 -> 2.75 (dropped)
    assert report["epochs"] == [3, 4]
    assert report["valid_accuracy"] == pytest.approx(0.9)
    assert [t["epoch"] for t in report["tried"]] == [4, 2, 1]
    np.testing.assert_allclose(average["w"], [3.5, 3.5])


@pytest.mark.slow
def test_training_with_epoch_averaging_records_its_choice(tmp_path):
    vectors, train_part, valid_part = toy_split(tmp_path)
    config = small_config(average_epochs=True)
    result = train(train_part, valid_part, vectors, config, tmp_path / "ckpt", **QUIET)
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("epoch-*")) == [
        "epoch-001.safetensors",
        "epoch-002.safetensors",
        "epoch-003.safetensors",
    ]
    averaged = result.bundle.card["averaged_epochs"]
    best = max(h["valid_accuracy"] for h in result.history)
    assert averaged["epochs"][0] == result.bundle.card["best_epoch"]
    assert averaged["valid_accuracy"] >= best
    assert result.bundle.card["valid_metrics"]["uncalibrated"]["accuracy"] == pytest.approx(
        averaged["valid_accuracy"],
        abs=0.02,  # float16 rounding of the shipped weights may move a row
    )


@pytest.mark.slow
def test_init_model_continues_from_a_bundle(tmp_path):
    vectors, train_part, valid_part = toy_split(tmp_path)
    quiet = QUIET
    first = train(train_part, valid_part, vectors, small_config(epochs=2), tmp_path / "a", **quiet)
    save_bundle(first.bundle, tmp_path / "first", weights_dtype="float16")
    start = load_bundle(tmp_path / "first")
    tuned = train(
        train_part,
        valid_part,
        vectors,
        small_config(epochs=1, learning_rate=1e-9, init_model=str(tmp_path / "first")),
        tmp_path / "b",
        **quiet,
    )
    assert tuned.bundle.vocab.tokens == start.vocab.tokens
    assert tuned.bundle.card["initialized_from"]["weights_sha256"] == start.weights_sha256
    # a learning rate of ~0 leaves the starting weights: the fine-tune begins where the bundle ended
    np.testing.assert_allclose(
        tuned.bundle.params["head"]["kernel"], start.params["head"]["kernel"], atol=1e-3
    )
    assert tuned.history[0]["valid_accuracy"] == pytest.approx(first.valid_report["accuracy"], abs=0.02)
    with pytest.raises(UsageError, match="init-model"):
        train(
            train_part,
            valid_part,
            vectors,
            small_config(epochs=1, hidden=4, init_model=str(tmp_path / "first")),
            tmp_path / "c",
            **quiet,
        )
    # another split (e.g. another --seed) would validate on rows the bundle trained on: refused
    other_train, other_valid = split_validation(labeled(toy_reviews(300, 1), "toy"), 0.2, seed=7)
    with pytest.raises(UsageError, match="validation rows"):
        config = small_config(epochs=1, init_model=str(tmp_path / "first"))
        train(other_train, other_valid, vectors, config, tmp_path / "d", **quiet)


@pytest.mark.slow
def test_adversarial_push_spends_its_budget_on_real_tokens_and_raises_the_loss():
    config = ModelConfig(vocab_size=50, embed_dim=6, hidden=5, num_layers=2, dropout=0.0, pooling=("max",))
    model = SentimentBiLSTM(config)
    params = init_params(config, seed=3)
    rng = np.random.default_rng(0)
    lengths = np.array([3, 9, 1, 6], np.int32)
    ids = np.where(np.arange(9) < lengths[:, None], rng.integers(2, 50, (4, 9)), 0).astype(np.int32)
    labels = np.array([0, 1, 1, 0])

    def losses(perturbation):
        logits = model.apply({"params": params}, ids, lengths, perturbation=perturbation)
        return -jax.nn.log_softmax(logits)[np.arange(4), labels]

    towards_loss = jax.grad(lambda p: losses(p).sum())(jnp.zeros((4, 9, 6)))
    push = np.asarray(adversarial_push(towards_loss, 0.5))
    np.testing.assert_allclose(np.linalg.norm(push.reshape(4, -1), axis=1), 0.5, rtol=1e-5)
    padding = np.arange(9)[None, :] >= lengths[:, None]
    assert np.abs(push[padding]).max() == 0.0  # nothing wasted on (or leaking through) padding
    random_push = rng.normal(size=push.shape) * ~padding[..., None]
    random_push *= 0.5 / np.linalg.norm(random_push.reshape(4, -1), axis=1)[:, None, None]
    clean, pushed, randomly = (np.asarray(losses(p)) for p in (None, push, random_push))
    assert (pushed > clean).all()  # every review's loss rises along its own gradient ...
    assert (pushed - clean > np.abs(randomly - clean)).all()  # ... more than along a random nudge


@pytest.mark.slow
def test_adversarial_training_learns_and_is_recorded(tmp_path):
    vectors, train_part, valid_part = toy_split(tmp_path, rows=600, seed=0)
    plain = train(train_part, valid_part, vectors, small_config(), tmp_path / "a", **QUIET)
    config = small_config(adversarial_epsilon=0.3)
    result = train(train_part, valid_part, vectors, config, tmp_path / "b", **QUIET)
    assert result.valid_report["accuracy"] > 0.9
    assert result.bundle.card["train_config"]["adversarial_epsilon"] == 0.3
    assert not np.array_equal(result.bundle.params["head"]["kernel"], plain.bundle.params["head"]["kernel"])


@pytest.mark.slow
def test_weight_drop_masks_only_the_recurrent_weights_and_keeps_their_expected_value():
    config = ModelConfig(vocab_size=50, embed_dim=6, hidden=40, num_layers=2, pooling=("max",))
    params = init_params(config, seed=1)
    dropped = drop_recurrent_weights(params, 0.3, jax.random.PRNGKey(5))
    for name in ("lstm_0", "lstm_1"):
        plain, masked = np.asarray(params[name]["w_hidden"]), np.asarray(dropped[name]["w_hidden"])
        zeroed = masked == 0.0
        assert 0.25 < zeroed.mean() < 0.35
        np.testing.assert_allclose(masked[~zeroed], plain[~zeroed] / 0.7, rtol=1e-6)  # E[masked] = plain
        for other in ("w_input", "bias"):
            np.testing.assert_array_equal(dropped[name][other], params[name][other])
    np.testing.assert_array_equal(dropped["head"]["kernel"], params["head"]["kernel"])
    # each layer and each batch (key) gets its own mask
    assert not np.array_equal(dropped["lstm_0"]["w_hidden"] == 0, dropped["lstm_1"]["w_hidden"] == 0)
    again = drop_recurrent_weights(params, 0.3, jax.random.PRNGKey(6))
    assert not np.array_equal(again["lstm_0"]["w_hidden"] == 0, dropped["lstm_0"]["w_hidden"] == 0)


@pytest.mark.slow
def test_weight_drop_training_learns_and_is_recorded(tmp_path):
    vectors, train_part, valid_part = toy_split(tmp_path, rows=600, seed=0)
    plain = train(train_part, valid_part, vectors, small_config(), tmp_path / "a", **QUIET)
    result = train(train_part, valid_part, vectors, small_config(weight_drop=0.3), tmp_path / "b", **QUIET)
    assert result.valid_report["accuracy"] > 0.9
    assert result.bundle.card["train_config"]["weight_drop"] == 0.3
    assert not np.array_equal(result.bundle.params["head"]["kernel"], plain.bundle.params["head"]["kernel"])


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--epochs", "0"),  # wrote the untrained initial weights as a model, exit 0
        ("--batch-size", "0"),
        ("--learning-rate", "-0.001"),  # trained towards the wrong label
        ("--weight-decay", "-1"),
        ("--dropout", "1.5"),
        ("--token-dropout", "1"),
        ("--weight-drop", "1"),
        ("--ema-decay", "1"),  # the shipped average would stay the random initial weights
        ("--embed-lr-scale", "-1"),
        ("--hidden", "0"),  # ended in "float division by zero"
        ("--num-layers", "0"),
        ("--max-tokens", "0"),
        ("--head-tokens", "-1"),
        ("--min-count", "0"),
        ("--max-vocab", "0"),
        ("--valid-fraction", "1"),
        ("--seed", "-1"),
        ("--head-tokens", "600"),  # more than --max-tokens 400
    ],
)
def test_train_options_are_checked_before_any_work(tmp_path, option, value):
    pq.write_table(toy_reviews(40, 5), tmp_path / "train.parquet")
    args = ["train", "--train", str(tmp_path / "train.parquet"), "-o", str(tmp_path / "m"), option, value]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert option in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.checkpoint").exists()
