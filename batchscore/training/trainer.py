"""`train`: data -> vocabulary -> optional language-model stage -> classifier epochs -> the weights
chosen on validation -> temperature -> a bundle with its card. Each step is a function of its own."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batchscore.base.errors import UsageError
from batchscore.inference.batching import BucketSpec, plan_batches
from batchscore.inference.device import enable_compilation_cache
from batchscore.inference.forward import Scorer, Truncation
from batchscore.io.safe_files import write_bytes_atomically
from batchscore.model.bilstm import ModelConfig
from batchscore.model.bundle import Bundle
from batchscore.model.language_model import classifier_start
from batchscore.model.network import SentimentBiLSTM, init_params
from batchscore.model.probabilities import softmax
from batchscore.text.encoding import Encoded, encode
from batchscore.text.tokenizer import TokenizerConfig, tokenize_array
from batchscore.text.vocab import Vocab
from batchscore.training.card import model_card, reference_profile
from batchscore.training.checkpoint import Checkpoint
from batchscore.training.config import TrainConfig, TrainState, lm_data_meta, require_same_settings
from batchscore.training.datasets import LabeledData, UnlabeledText
from batchscore.training.embeddings import WordVectors, embedding_matrix
from batchscore.training.evaluate import classification_report, fit_temperature
from batchscore.training.loop import EpochTotals, run_epochs
from batchscore.training.pretraining import prepare_lm_text, pretrain_language_model
from batchscore.training.selection import as_shipped, greedy_epoch_average
from batchscore.training.steps import make_classifier_step, make_optimizer


@dataclass(frozen=True)
class TrainResult:
    bundle: Bundle
    history: list[dict]
    valid_report: dict
    valid_report_uncalibrated: dict


@dataclass
class _Prepared:
    """What training reads: the vocabulary and the encoded rows, the starting embedding matrix."""

    vocab: Vocab
    train_enc: Encoded
    valid_enc: Encoded
    embedding: np.ndarray
    coverage: float
    lm_text: UnlabeledText | None
    lm_record: dict | None


def build_vocab(texts: pa.Array, tokenizer: TokenizerConfig, min_count: int, max_size: int) -> Vocab:
    counts = pc.value_counts(pc.list_flatten(tokenize_array(texts, tokenizer)))
    table = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))
    return Vocab.from_counts(table, min_count=min_count, max_size=max_size)


def train(
    train_data: LabeledData,
    valid_data: LabeledData,
    vectors: WordVectors,
    config: TrainConfig,
    checkpoint_dir: Path,
    resume: bool = False,
    log: Callable[[str], None] = print,
    progress: bool = True,
    card_extra: dict | None = None,
    lm_text: UnlabeledText | None = None,
) -> TrainResult:
    """`lm_text`: unlabeled reviews the language-model stage reads besides the training texts; they
    also join the vocabulary (same min-count), so words only they hold get pretrained vectors."""
    enable_compilation_cache()  # a resumed or repeated training loads its step programs
    start = _initial_bundle(config, vectors, valid_data) if config.init_model else None
    data = _prepare(train_data, valid_data, vectors, config, checkpoint_dir, resume, start, lm_text, log)
    model_config = ModelConfig(
        vocab_size=len(data.vocab),
        embed_dim=vectors.dim,
        hidden=config.hidden,
        num_layers=config.num_layers,
        dropout=config.dropout,
        pooling=config.pooling,
    )
    spec = BucketSpec(
        config.boundaries, token_budget=config.batch_size * config.max_tokens, max_rows=config.batch_size
    )
    if start is not None:
        params = jax.tree_util.tree_map(jnp.asarray, start.params)
    else:
        params = init_params(model_config, config.seed)
        params["embedding"]["embedding"] = jnp.asarray(data.embedding)
    lm_record = data.lm_record
    if config.lm_pretrain_epochs > 0:
        if start is not None:
            raise UsageError("--lm-pretrain-epochs starts from GloVe, not from --init-model's bundle")
        params, lm_record = _pretrained(params, data, config, spec, checkpoint_dir, resume, log, progress)
    classifier = _Classifier(
        model_config, config, data, train_data, valid_data, spec, checkpoint_dir, lm_record, log
    )
    state, best, averaged = classifier.fit(params, resume, progress)

    card_fields = {
        "initialized_from": {"bundle": start.name, "weights_sha256": start.weights_sha256} if start else None,
        "lm_record": lm_record,
        "averaged": averaged,
        "extra": card_extra,
    }
    bundle, before, after = _calibrated_bundle(best, classifier, train_data, vectors, state, card_fields, log)
    return TrainResult(bundle, state.history, after, before)


def _pretrained(
    params: dict,
    data: _Prepared,
    config: TrainConfig,
    spec: BucketSpec,
    checkpoint_dir: Path,
    resume: bool,
    log: Callable[[str], None],
    progress: bool,
) -> tuple[dict, dict]:
    """The classifier's starting parameters after language-model pretraining on the training texts
    (and any unlabeled ones), and the stage's record for the model card."""
    lm_enc = data.train_enc
    if data.lm_text is not None:
        lm_enc = Encoded.concat([data.train_enc, encode(data.lm_text.texts, data.vocab, TokenizerConfig())])
    lm_params, stage = pretrain_language_model(
        params, lm_enc, data.valid_enc, config, spec, checkpoint_dir / "language-model", resume, log,
        progress, data.lm_record,
    )  # fmt: skip
    return classifier_start(lm_params, params), {**(data.lm_record or {}), **stage}


def _calibrated_bundle(
    best: dict,
    classifier: _Classifier,
    train_data: LabeledData,
    vectors: WordVectors,
    state: TrainState,
    card_fields: dict,
    log: Callable[[str], None],
) -> tuple[Bundle, dict, dict]:
    """The bundle of the chosen weights with its temperature and card; the validation reports before
    and after the temperature."""
    model_config, config, data, valid_data = (
        classifier.model_config, classifier.config, classifier.data, classifier.valid_data
    )  # fmt: skip
    # model selection and calibration use the validation split only, and the temperature is fitted
    # on the weights exactly as they ship (rounded to WEIGHTS_DTYPE), not on the float32 originals
    best = as_shipped(best)
    valid_logits = Scorer(model_config, best, classifier.truncation, classifier.eval_spec).logits(
        data.valid_enc
    )
    temperature = fit_temperature(valid_logits, valid_data.labels)
    before = classification_report(softmax(valid_logits)[:, 1], valid_data.labels, data.valid_enc.n_tokens)
    calibrated = softmax(valid_logits, temperature)[:, 1]
    after = classification_report(calibrated, valid_data.labels, data.valid_enc.n_tokens)
    log(
        f"best epoch {state.best_epoch}; temperature {temperature:.3f}: "
        f"valid ECE {before['ece']:.4f} -> {after['ece']:.4f}"
    )
    card = model_card(
        config, train_data, valid_data, vectors, data.coverage, state, (before, after), temperature,
        reference_profile(data.valid_enc, calibrated, Bundle.labels, config.max_tokens), **card_fields,
    )  # fmt: skip
    bundle = Bundle(
        name="bilstm-" + Path(vectors.source).stem,
        model=ModelConfig(**{**model_config.to_dict(), "dropout": 0.0}),
        tokenizer=TokenizerConfig(),
        vocab=data.vocab,
        params=best,
        max_tokens=config.max_tokens,
        head_tokens=config.head_tokens,
        temperature=temperature,
        card=card,
    )
    return bundle, before, after


def _prepare(
    train_data: LabeledData,
    valid_data: LabeledData,
    vectors: WordVectors,
    config: TrainConfig,
    checkpoint_dir: Path,
    resume: bool,
    start: Bundle | None,
    lm_text: UnlabeledText | None,
    log: Callable[[str], None],
) -> _Prepared:
    tokenizer = TokenizerConfig()
    lm_record = None
    if lm_text is not None:
        lm_text, lm_record = prepare_lm_text(lm_text, train_data, valid_data, config, log)
    vocab_texts = train_data.texts if lm_text is None else pa.concat_arrays([train_data.texts, lm_text.texts])
    if resume and Checkpoint(checkpoint_dir).exists():
        vocab = Vocab.load(checkpoint_dir / "vocab.txt")
    elif start is not None:
        vocab = start.vocab
    else:
        vocab = build_vocab(vocab_texts, tokenizer, config.min_count, config.max_vocab)
    init = embedding_matrix(vocab, vectors, config.seed)
    train_enc = encode(train_data.texts, vocab, tokenizer)
    valid_enc = encode(valid_data.texts, vocab, tokenizer)
    coverage = float(init.found[train_enc.ids].mean()) if train_enc.ids.size else 0.0
    log(
        f"vocabulary: {len(vocab)} tokens, {int(init.found.sum())} found in {vectors.source} "
        f"({vectors.dim}d); pretrained vectors cover {coverage:.1%} of training tokens"
    )
    return _Prepared(vocab, train_enc, valid_enc, init.matrix, coverage, lm_text, lm_record)


class _Classifier:
    """The classifier epochs: train, validate the (EMA) weights after each, keep the best, checkpoint.
    step and end_epoch are run_epochs' hooks."""

    def __init__(
        self,
        model_config,
        config,
        data: _Prepared,
        train_data,
        valid_data,
        spec,
        checkpoint_dir,
        lm_record,
        log,
    ):
        self.model_config, self.config, self.data, self.valid_data = model_config, config, data, valid_data
        self.train_labels = train_data.labels
        self.spec, self.checkpoint_dir, self.lm_record = spec, checkpoint_dir, lm_record
        self.checkpoint = Checkpoint(checkpoint_dir)
        self.truncation = Truncation(config.max_tokens, config.head_tokens)
        self.eval_spec = BucketSpec(config.boundaries, token_budget=256 * config.max_tokens, max_rows=512)
        batches_per_epoch = len(plan_batches(data.train_enc.n_tokens, config.max_tokens, spec))
        self.optimizer = make_optimizer(config, batches_per_epoch * config.epochs)
        self.update = make_classifier_step(SentimentBiLSTM(model_config), self.optimizer, config)
        self.state = TrainState()
        self.meta = {
            "train_config": config.to_dict(),
            "vocab_size": len(data.vocab),
            **lm_data_meta(lm_record),
        }
        self.log: Callable[[str], None] = log

    def validate(self, candidate: dict) -> dict:
        """Uncalibrated metrics of float32 parameters on the validation rows (every choice uses these)."""
        scorer = Scorer(self.model_config, candidate, self.truncation, self.eval_spec)
        return classification_report(
            softmax(scorer.logits(self.data.valid_enc))[:, 1], self.valid_data.labels
        )

    def fit(self, params: dict, resume: bool, progress: bool) -> tuple[TrainState, dict, dict | None]:
        """(progress, the weights chosen on validation, the epoch average's record if averaging)."""
        config, log = self.config, self.log
        self.params, self.opt_state = params, self.optimizer.init(params)
        self.ema = self.best = params
        if resume and self.checkpoint.exists():
            trees, self.opt_state, self.state, saved_meta = self.checkpoint.load(self.opt_state)
            self.params, self.ema, self.best = (trees[name] for name in Checkpoint.TREES)
            require_same_settings(saved_meta, config, self.checkpoint_dir, self.lm_record)
            log(f"resuming after epoch {self.state.epoch} (step {self.state.step})")
        else:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            write_bytes_atomically(str(self.checkpoint_dir / "vocab.txt"), self.data.vocab.to_text().encode())
        run_epochs(
            self.state, config.epochs, self.data.train_enc, self.spec, self.truncation,
            lambda epoch: np.random.default_rng([config.seed, epoch]), jax.random.PRNGKey(config.seed),
            self.step, self.end_epoch, "epoch", progress,
        )  # fmt: skip
        if not config.average_epochs:
            return self.state, self.best, None
        best, averaged = greedy_epoch_average(
            self.state.history, self.state.best_epoch, self.checkpoint.epoch_weights,
            lambda candidate: self.validate(candidate)["accuracy"],
        )  # fmt: skip
        log(
            f"weight average of epochs {averaged['epochs']}: valid acc "
            f"{self.state.best_valid_accuracy:.4f} -> {averaged['valid_accuracy']:.4f}"
        )
        return self.state, best, averaged

    def step(self, batch, ids, lengths, key, rng) -> tuple[float, float, float]:
        labels = np.zeros(batch.padded_rows, np.int32)
        labels[: batch.rows.size] = self.train_labels[batch.rows]
        weights = (np.arange(batch.padded_rows) < batch.rows.size).astype(np.float32)
        self.params, self.ema, self.opt_state, loss, correct = self.update(
            self.params, self.ema, self.opt_state, ids, lengths, labels, weights, key, self.state.step
        )
        return float(loss), batch.rows.size, float(correct)

    def end_epoch(self, epoch: int, totals: EpochTotals) -> None:
        state, started = self.state, time.perf_counter()
        valid = self.validate(self.ema)  # ema is params when averaging is off
        elapsed = totals.seconds + time.perf_counter() - started
        state.seconds += elapsed
        record = {
            "epoch": epoch + 1,
            "train_loss": totals.mean_loss,
            "train_accuracy": totals.correct / totals.weight,
            "valid_loss": valid["log_loss"],
            "valid_accuracy": valid["accuracy"],
            "seconds": round(elapsed, 1),
        }
        state.history.append(record)
        if valid["accuracy"] > state.best_valid_accuracy:
            state.best_valid_accuracy, state.best_epoch, self.best = valid["accuracy"], epoch + 1, self.ema
        state.epoch = epoch + 1
        if self.config.average_epochs:
            self.checkpoint.save_epoch_weights(epoch + 1, self.ema)
        trees = {"params": self.params, "ema": self.ema, "best": self.best}
        self.checkpoint.save(trees, self.opt_state, state, self.meta)
        self.log(
            f"epoch {epoch + 1}: train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f} | "
            f"valid loss {record['valid_loss']:.4f} acc {record['valid_accuracy']:.4f} | {elapsed:.0f}s"
        )


def _initial_bundle(config: TrainConfig, vectors: WordVectors, valid_data: LabeledData) -> Bundle:
    """The bundle --init-model names, checked against this run: training continues from its weights and
    vocabulary (a fine-tune, e.g. with a small learning rate and --average-epochs).

    The validation rows must be the ones the bundle was trained with: any other split would hold rows
    the bundle has learned, and every choice made on it (best epoch, average, temperature) would
    silently favour memorisation (a different --seed re-splits: validation accuracy 0.98 instead of
    0.90 on IMDb). The architecture must match too.
    """
    from batchscore.model.bundle import load_bundle

    bundle = load_bundle(config.init_model)
    trained_on = bundle.card.get("valid_data", {}).get("sha256")
    if trained_on is None or trained_on != valid_data.content_sha256():
        raise UsageError(
            f"--init-model {config.init_model}: this run's validation rows ({valid_data.source}, sha256 "
            f"{valid_data.content_sha256()[:12]}) are not the ones the bundle was trained with (card: "
            f"{(trained_on or 'none recorded')[:12]}); use the same --seed and --valid-fraction, or --valid"
        )
    wanted = {
        "embed_dim": vectors.dim,
        "hidden": config.hidden,
        "num_layers": config.num_layers,
        "pooling": config.pooling,
    }
    have = {key: getattr(bundle.model, key) for key in wanted}
    if have != wanted:
        raise UsageError(f"--init-model {config.init_model}: its model is {have}, this run's is {wanted}")
    return bundle
