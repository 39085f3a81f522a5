"""Training: bucketed, shuffled mini-batches, AdamW, per-epoch checkpoints, model selection.

Determinism: epoch e shuffles with a generator seeded by (seed, e), and dropout
keys are derived from (seed, step), so a run resumed from a checkpoint takes
exactly the steps the uninterrupted run would have taken.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pyarrow as pa
import pyarrow.compute as pc
from safetensors.numpy import load_file, save_file

from batchscore import __version__
from batchscore.batching import BucketSpec, pad_batch, plan_batches
from batchscore.bundle import Bundle, save_bundle
from batchscore.datasets import DataError, LabeledData, UnlabeledText
from batchscore.drift import Profile
from batchscore.embeddings import WordVectors, embedding_matrix
from batchscore.encoding import Encoded, encode
from batchscore.errors import UsageError
from batchscore.evaluate import classification_report, fit_temperature, paired_comparison
from batchscore.model import ModelConfig, SentimentBiLSTM, flatten_params, init_params, unflatten_params
from batchscore.pretrain import (
    LM_DROPOUT,
    LM_NEGATIVES,
    classifier_start,
    init_lm_head,
    lm_loss,
    lm_parameters,
    sampling_distribution,
)
from batchscore.scoring import Scorer, Truncation, softmax
from batchscore.text import TokenizerConfig, tokenize_array
from batchscore.validation import EMPTY_TEXT
from batchscore.vocab import UNK_ID, Vocab

WEIGHTS_DTYPE = "float16"  # halves the bundle; test accuracy is measured on these weights


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 200
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    dropout: float = 0.4
    hidden: int = 100
    num_layers: int = 2
    max_tokens: int = 400
    head_tokens: int = 100
    min_count: int = 2
    max_vocab: int = 60000
    seed: int = 0
    boundaries: tuple[int, ...] = (64, 128, 192, 256, 320)
    embed_lr_scale: float = 1.0  # fine-tune the pretrained vectors slower than the LSTM
    token_dropout: float = 0.0  # training-time share of tokens replaced by <unk>
    ema_decay: float = 0.0  # evaluate and ship an exponential moving average of the weights (0: off)
    pooling: tuple[str, ...] = ()  # head features beyond first+last: "max", "mean" (model.POOLINGS)
    average_epochs: bool = False  # ship a greedy average of the epochs' weights (chosen on validation)
    init_model: str = ""  # a bundle to continue from (its vocabulary and weights); "" = GloVe + random
    adversarial_epsilon: float = 0.0  # L2 size of the per-review embedding perturbation (0: off)
    lm_pretrain_epochs: int = 0  # epochs of language-model pretraining on the training texts first
    weight_drop: float = 0.0  # share of recurrent (hidden-to-hidden) weights dropped per batch (0: off)

    def __post_init__(self) -> None:
        if self.head_tokens > self.max_tokens:
            raise UsageError(
                f"--head-tokens {self.head_tokens} is more than --max-tokens {self.max_tokens}: a long "
                "review keeps its first head-tokens and last (max - head) tokens"
            )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainState:
    """What a checkpoint holds besides the arrays."""

    epoch: int = 0  # epochs completed
    step: int = 0
    best_epoch: int = 0
    best_valid_accuracy: float = -1.0
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


class Checkpoint:
    """Per-epoch state in a directory: current and best params, optimiser state, progress."""

    def __init__(self, directory: Path):
        self.directory = directory

    def exists(self) -> bool:
        return (self.directory / "state.json").is_file()

    TREES = ("params", "ema", "best")

    def save(self, trees: dict[str, dict], opt_state, state: TrainState, meta: dict) -> None:
        """`trees` holds the current, averaged and best parameters (see TREES)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        arrays = {
            f"{tree}/{k}": np.asarray(v)
            for tree in self.TREES
            for k, v in flatten_params(trees[tree]).items()
        }
        leaves = jax.tree_util.tree_leaves(opt_state)
        arrays.update({f"opt/{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)})
        # Arrays go to a file named by the step; state.json names that file and is replaced atomically,
        # so it is the single commit point: a crash before it leaves the previous checkpoint whole.
        name = f"arrays-{state.step:09d}.safetensors"
        tmp = self.directory / f".{name}.tmp"
        save_file(arrays, str(tmp))
        _fsync(tmp)
        os.replace(tmp, self.directory / name)
        payload = {"state": asdict(state), "meta": meta, "arrays": name}
        tmp = self.directory / ".state.tmp"
        tmp.write_text(json.dumps(payload, indent=1))
        _fsync(tmp)
        os.replace(tmp, self.directory / "state.json")
        for old in self.directory.glob("arrays*.safetensors"):  # superseded checkpoints
            if old.name != name:
                old.unlink()

    def save_epoch_weights(self, epoch: int, params: dict) -> None:
        """The weights evaluated after `epoch`, kept for averaging; written before that epoch's commit,
        so every committed epoch has its file (a rerun of an uncommitted epoch rewrites it)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epoch:03d}.safetensors"
        tmp = self.directory / f".{name}.tmp"
        save_file({k: np.asarray(v) for k, v in flatten_params(params).items()}, str(tmp))
        _fsync(tmp)
        os.replace(tmp, self.directory / name)

    def epoch_weights(self, epoch: int) -> dict:
        arrays = load_file(str(self.directory / f"epoch-{epoch:03d}.safetensors"))
        return unflatten_params({k: jnp.asarray(v) for k, v in arrays.items()})

    def load(self, opt_template) -> tuple[dict[str, dict], object, TrainState, dict]:
        payload = json.loads((self.directory / "state.json").read_text())
        arrays = load_file(str(self.directory / payload.get("arrays", "arrays.safetensors")))
        trees = {
            tree: unflatten_params(
                {k[len(tree) + 1 :]: jnp.asarray(v) for k, v in arrays.items() if k.startswith(f"{tree}/")}
            )
            for tree in self.TREES
        }
        if not trees["ema"]:  # checkpoints from before weight averaging
            trees["ema"] = trees["params"]
        treedef = jax.tree_util.tree_structure(opt_template)
        n = treedef.num_leaves
        opt_state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(arrays[f"opt/{i}"]) for i in range(n)])
        return trees, opt_state, TrainState(**payload["state"]), payload["meta"]


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def build_vocab(texts: pa.Array, tokenizer: TokenizerConfig, min_count: int, max_size: int) -> Vocab:
    counts = pc.value_counts(pc.list_flatten(tokenize_array(texts, tokenizer)))
    table = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))
    return Vocab.from_counts(table, min_count=min_count, max_size=max_size)


def _make_optimizer(config: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=config.learning_rate * 0.05,
        peak_value=config.learning_rate,
        warmup_steps=min(config.warmup_steps, max(1, total_steps // 10)),
        decay_steps=max(total_steps, 2),
        end_value=config.learning_rate * 0.02,
    )
    return optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        optax.adamw(schedule, weight_decay=config.weight_decay),
    )


def adversarial_push(towards_loss: jax.Array, epsilon: float) -> jax.Array:
    """Each review's (B, T, D) loss gradient scaled to L2 length epsilon: the first-order worst-case
    nudge of its embeddings. Padding gets no gradient, so the whole budget lands on real tokens."""
    norms = jnp.sqrt(jnp.sum(jnp.square(towards_loss), axis=(1, 2), keepdims=True))
    return jax.lax.stop_gradient(epsilon * towards_loss / (norms + 1e-12))


def drop_recurrent_weights(params: dict, rate: float, key: jax.Array) -> dict:
    """`params` with each LSTM layer's hidden-to-hidden weights under one DropConnect mask per batch
    (Wan et al., 2013; Merity et al., 2018's weight drop).

    Dropout on the outputs cannot reach the recurrence without breaking what the cell carries from
    step to step; a mask on W_h, the same for every step, regularises the recurrence itself. Kept
    weights are scaled by 1 / (1 - rate), so inference uses the plain weights unchanged.
    """
    dropped = dict(params)
    layers = sorted(name for name in params if name.startswith("lstm_"))
    for name, layer_key in zip(layers, jax.random.split(key, len(layers)), strict=True):
        w_hidden = params[name]["w_hidden"]
        keep = jax.random.bernoulli(layer_key, 1.0 - rate, w_hidden.shape)
        dropped[name] = {**params[name], "w_hidden": jnp.where(keep, w_hidden / (1.0 - rate), 0.0)}
    return dropped


def _make_train_step(model: SentimentBiLSTM, optimizer: optax.GradientTransformation, config: TrainConfig):
    def loss_fn(params, perturbation, ids, lengths, labels, weights, key):
        drop_key = key
        if config.token_dropout > 0:
            drop_key, token_key = jax.random.split(key)
            hide = jax.random.bernoulli(token_key, config.token_dropout, ids.shape) & (ids > UNK_ID)
            ids = jnp.where(hide, UNK_ID, ids)
        if config.weight_drop > 0:
            drop_key, weight_key = jax.random.split(drop_key)
            params = drop_recurrent_weights(params, config.weight_drop, weight_key)
        logits = model.apply(
            {"params": params},
            ids,
            lengths,
            train=True,
            perturbation=perturbation,
            rngs={"dropout": drop_key},
        )
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        total = jnp.maximum(weights.sum(), 1.0)
        correct = ((logits.argmax(-1) == labels) * weights).sum()
        return (losses * weights).sum() / total, correct

    def gradients(params, ids, lengths, labels, weights, key):
        """Loss gradients; with adversarial training (Miyato et al., 2017) the loss at the embeddings
        pushed a distance epsilon along each review's own loss gradient is added to the clean loss."""
        if config.adversarial_epsilon == 0:  # no perturbation, no gradient towards one
            (loss, correct), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, None, ids, lengths, labels, weights, key
            )
            return loss, correct, grads
        zero = jnp.zeros((*ids.shape, model.config.embed_dim), jnp.float32)
        (loss, correct), (grads, towards_loss) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            params, zero, ids, lengths, labels, weights, key
        )
        push = adversarial_push(towards_loss, config.adversarial_epsilon)
        adversarial_grads, _ = jax.grad(loss_fn, has_aux=True)(
            params, push, ids, lengths, labels, weights, key
        )
        return loss, correct, jax.tree_util.tree_map(jnp.add, grads, adversarial_grads)

    @jax.jit
    def step(params, ema, opt_state, ids, lengths, labels, weights, key, step_number):
        loss, correct, grads = gradients(params, ids, lengths, labels, weights, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        if config.embed_lr_scale != 1.0:
            updates["embedding"]["embedding"] = updates["embedding"]["embedding"] * config.embed_lr_scale
        params = optax.apply_updates(params, updates)
        if config.ema_decay > 0:
            # warm-started decay, so the average is not dominated by the random initial weights
            decay = jnp.minimum(config.ema_decay, (1.0 + step_number) / (10.0 + step_number))
            ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1 - decay) * p, ema, params)
        else:
            ema = params
        return params, ema, opt_state, loss, correct

    return step


@dataclass(frozen=True)
class TrainResult:
    bundle: Bundle
    history: list[dict]
    valid_report: dict
    valid_report_uncalibrated: dict


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
    tokenizer = TokenizerConfig()
    checkpoint = Checkpoint(checkpoint_dir)
    start = _initial_bundle(config, vectors, valid_data) if config.init_model else None
    lm_record = None
    if lm_text is not None:
        lm_text, lm_record = _prepare_lm_text(lm_text, train_data, valid_data, config, log)
    vocab_texts = train_data.texts if lm_text is None else pa.concat_arrays([train_data.texts, lm_text.texts])
    if resume and checkpoint.exists():
        vocab = Vocab.load(checkpoint_dir / "vocab.txt")
    elif start is not None:
        vocab = start.vocab
    else:
        vocab = build_vocab(vocab_texts, tokenizer, config.min_count, config.max_vocab)
    init = embedding_matrix(vocab, vectors, config.seed)
    train_enc = encode(train_data.texts, vocab, tokenizer)
    valid_enc = encode(valid_data.texts, vocab, tokenizer)
    coverage = _coverage(train_enc, init.found)
    log(
        f"vocabulary: {len(vocab)} tokens, {int(init.found.sum())} found in {vectors.source} "
        f"({vectors.dim}d); pretrained vectors cover {coverage:.1%} of training tokens"
    )

    model_config = ModelConfig(
        vocab_size=len(vocab),
        embed_dim=vectors.dim,
        hidden=config.hidden,
        num_layers=config.num_layers,
        dropout=config.dropout,
        pooling=config.pooling,
    )
    model = SentimentBiLSTM(model_config)
    spec = BucketSpec(
        config.boundaries, token_budget=config.batch_size * config.max_tokens, max_rows=config.batch_size
    )
    batches_per_epoch = len(plan_batches(train_enc.n_tokens, config.max_tokens, spec))
    optimizer = _make_optimizer(config, batches_per_epoch * config.epochs)
    if start is not None:
        params = jax.tree_util.tree_map(jnp.asarray, start.params)
    else:
        params = init_params(model_config, config.seed)
        params["embedding"]["embedding"] = jnp.asarray(init.matrix)
    if config.lm_pretrain_epochs > 0:
        if start is not None:
            raise UsageError("--lm-pretrain-epochs starts from GloVe, not from --init-model's bundle")
        lm_enc = (
            train_enc
            if lm_text is None
            else Encoded.concat([train_enc, encode(lm_text.texts, vocab, tokenizer)])
        )
        lm_params, stage = _pretrain_language_model(
            params,
            lm_enc,
            valid_enc,
            config,
            spec,
            checkpoint_dir / "language-model",
            resume,
            log,
            progress,
            lm_record,
        )
        lm_record = {**(lm_record or {}), **stage}
        params = classifier_start(lm_params, params)
    opt_state = optimizer.init(params)
    ema = best_params = params
    state = TrainState()
    meta = {"train_config": config.to_dict(), "vocab_size": len(vocab), **_lm_data_meta(lm_record)}
    if resume and checkpoint.exists():
        trees, opt_state, state, saved_meta = checkpoint.load(opt_state)
        params, ema, best_params = (trees[name] for name in Checkpoint.TREES)
        _require_same_settings(saved_meta, config, checkpoint_dir, lm_record)
        log(f"resuming after epoch {state.epoch} (step {state.step})")
    else:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        vocab.save(checkpoint_dir / "vocab.txt")

    step_fn = _make_train_step(model, optimizer, config)
    truncation = Truncation(config.max_tokens, config.head_tokens)
    eval_spec = BucketSpec(config.boundaries, token_budget=256 * config.max_tokens, max_rows=512)
    base_key = jax.random.PRNGKey(config.seed)

    def validate(candidate: dict) -> dict:
        """Uncalibrated metrics of float32 parameters on the validation rows (every choice uses these)."""
        logits = Scorer(model_config, candidate, truncation, eval_spec).logits(valid_enc)
        return classification_report(softmax(logits)[:, 1], valid_data.labels)

    for epoch in range(state.epoch, config.epochs):
        started = time.perf_counter()
        rng = np.random.default_rng([config.seed, epoch])
        plan = plan_batches(train_enc.n_tokens, config.max_tokens, spec, rng=rng)
        loss_sum = correct_sum = seen = 0.0
        bar = _progress(len(plan), f"epoch {epoch + 1}/{config.epochs}", progress)
        for i, batch in enumerate(plan):
            ids, lengths = pad_batch(
                train_enc.ids, train_enc.offsets, batch, config.max_tokens, config.head_tokens
            )
            labels = np.zeros(batch.padded_rows, np.int32)
            labels[: batch.rows.size] = train_data.labels[batch.rows]
            weights = (np.arange(batch.padded_rows) < batch.rows.size).astype(np.float32)
            key = jax.random.fold_in(base_key, state.step)
            params, ema, opt_state, loss, correct = step_fn(
                params, ema, opt_state, ids, lengths, labels, weights, key, state.step
            )
            state.step += 1
            loss_sum += float(loss) * batch.rows.size
            correct_sum += float(correct)
            seen += batch.rows.size
            if bar is not None:
                bar.update(1)
                if i % 20 == 0:
                    bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct_sum / seen:.4f}")
        if bar is not None:
            bar.close()
        valid = validate(ema)  # ema is params when averaging is off
        elapsed = time.perf_counter() - started
        state.seconds += elapsed
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / seen,
            "train_accuracy": correct_sum / seen,
            "valid_loss": valid["log_loss"],
            "valid_accuracy": valid["accuracy"],
            "seconds": round(elapsed, 1),
        }
        state.history.append(record)
        if valid["accuracy"] > state.best_valid_accuracy:
            state.best_valid_accuracy = valid["accuracy"]
            state.best_epoch = epoch + 1
            best_params = ema
        state.epoch = epoch + 1
        if config.average_epochs:
            checkpoint.save_epoch_weights(epoch + 1, ema)
        checkpoint.save({"params": params, "ema": ema, "best": best_params}, opt_state, state, meta)
        log(
            f"epoch {epoch + 1}: train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f} | "
            f"valid loss {record['valid_loss']:.4f} acc {record['valid_accuracy']:.4f} | {elapsed:.0f}s"
        )

    averaged = None
    if config.average_epochs:
        best_params, averaged = greedy_epoch_average(
            state.history, state.best_epoch, checkpoint.epoch_weights, lambda p: validate(p)["accuracy"]
        )
        log(
            f"weight average of epochs {averaged['epochs']}: valid acc "
            f"{state.best_valid_accuracy:.4f} -> {averaged['valid_accuracy']:.4f}"
        )
    # model selection and calibration use the validation split only, and the temperature is fitted
    # on the weights exactly as they ship (rounded to WEIGHTS_DTYPE), not on the float32 originals
    best_params = as_shipped(best_params)
    scorer = Scorer(model_config, best_params, truncation, eval_spec)
    valid_logits = scorer.logits(valid_enc)
    temperature = fit_temperature(valid_logits, valid_data.labels)
    before = classification_report(softmax(valid_logits)[:, 1], valid_data.labels, valid_enc.n_tokens)
    after = classification_report(
        softmax(valid_logits, temperature)[:, 1], valid_data.labels, valid_enc.n_tokens
    )
    log(
        f"best epoch {state.best_epoch}; temperature {temperature:.3f}: "
        f"valid ECE {before['ece']:.4f} -> {after['ece']:.4f}"
    )
    reference = reference_profile(
        valid_enc, softmax(valid_logits, temperature)[:, 1], Bundle.labels, config.max_tokens
    )
    inference_config = ModelConfig(**{**model_config.to_dict(), "dropout": 0.0})
    card = {
        "train_data": {
            "source": train_data.source,
            "rows": len(train_data),
            "sha256": train_data.content_sha256(),
        },
        "valid_data": {
            "source": valid_data.source,
            "rows": len(valid_data),
            "sha256": valid_data.content_sha256(),
        },
        "embeddings": {
            "source": vectors.source,
            "dim": vectors.dim,
            "vocab_coverage_of_train_tokens": coverage,
        },
        "train_config": config.to_dict(),
        **(
            {"initialized_from": {"bundle": start.name, "weights_sha256": start.weights_sha256}}
            if start
            else {}
        ),
        **({"lm_pretraining": lm_record} if lm_record else {}),
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        **({"averaged_epochs": averaged} if averaged else {}),
        "history": state.history,
        "training_seconds": round(state.seconds + (lm_record["seconds"] if lm_record else 0.0), 1),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, {jax.default_backend()}",
        "versions": {"batchscore": __version__, "jax": jax.__version__, "python": platform.python_version()},
        "valid_metrics": {"uncalibrated": _headline(before), "calibrated": _headline(after)},
        "temperature": temperature,
        "reference_profile": reference,
        **(card_extra or {}),
    }
    bundle = Bundle(
        name="bilstm-" + Path(vectors.source).stem,
        model=inference_config,
        tokenizer=tokenizer,
        vocab=vocab,
        params=best_params,
        max_tokens=config.max_tokens,
        head_tokens=config.head_tokens,
        temperature=temperature,
        card=card,
    )
    return TrainResult(bundle, state.history, after, before)


# Settings the language-model stage never reads: its checkpoint serves a classifier run that differs
# only in these, so trying another classifier schedule does not repeat the pretraining.
CLASSIFIER_ONLY_SETTINGS = ("epochs", "average_epochs")


def _require_same_settings(
    saved_meta: dict,
    config: TrainConfig,
    directory: Path,
    lm_record: dict | None = None,
    ignored: tuple[str, ...] = (),
) -> None:
    """A checkpoint resumes only the run that wrote it: any other setting would silently mix two runs."""
    saved_config = {**TrainConfig().to_dict(), **saved_meta["train_config"]}  # older runs lack new keys
    current = config.to_dict()
    for name in ignored:
        saved_config.pop(name, None)
        current.pop(name, None)
    if json.loads(json.dumps(saved_config)) != json.loads(json.dumps(current)):
        raise UsageError(f"{directory}: checkpoint was made with different settings; cannot resume")
    if saved_meta.get("lm_data", []) != _lm_data_meta(lm_record).get("lm_data", []):
        raise UsageError(
            f"{directory}: checkpoint was made with other --lm-data (files or their contents differ); "
            "cannot resume"
        )


def _lm_data_meta(lm_record: dict | None) -> dict:
    """What of the unlabeled text a checkpoint must match to resume: each file's sha256."""
    if not lm_record or "lm_data" not in lm_record:
        return {}
    return {"lm_data": [source["sha256"] for source in lm_record["lm_data"]["sources"]]}


def _require_pretraining(config: TrainConfig) -> None:
    if config.lm_pretrain_epochs == 0:
        raise UsageError("--lm-data is read only by language-model pretraining: add --lm-pretrain-epochs N")


def _prepare_lm_text(
    lm_text: UnlabeledText,
    train_data: LabeledData,
    valid_data: LabeledData,
    config: TrainConfig,
    log: Callable[[str], None],
) -> tuple[UnlabeledText, dict]:
    """The unlabeled text without the training and validation texts, and the card's account of it:
    files, rows, sha256, what was left out, and the vocabulary rule."""
    _require_pretraining(config)
    kept, duplicates = lm_text.without(pa.concat_arrays([train_data.texts, valid_data.texts]))
    log(
        f"language-model text: {len(kept):,} unlabeled rows from {len(lm_text.sources)} file(s) "
        f"besides the {len(train_data):,} training texts ({duplicates:,} left out: the same text is "
        "a training or validation row)"
    )
    return kept, {
        "lm_data": {
            "sources": lm_text.sources,
            "rows": len(kept),
            "left_out_as_training_or_validation_text": duplicates,
            "vocabulary": f"training and unlabeled text, tokens seen at least {config.min_count} times",
        }
    }


def _pretrain_language_model(
    params: dict,
    lm_enc: Encoded,
    valid_enc: Encoded,
    config: TrainConfig,
    spec: BucketSpec,
    directory: Path,
    resume: bool,
    log: Callable[[str], None],
    progress: bool,
    lm_record: dict | None = None,
) -> tuple[dict, dict]:
    """config.lm_pretrain_epochs of next-token training (pretrain.py) of `params`' embedding and LSTM
    layers on `lm_enc` (the training texts, and any unlabeled ones); labels are not read.
    Checkpointed per epoch in `directory`, so a resumed run continues the pretraining, or skips it
    once it is complete, exactly as it would have run. `lm_record` names the unlabeled text a
    checkpoint must match. Returns the pretrained parameters and the card's record of the stage."""
    checkpoint = Checkpoint(directory)
    vocab_size = params["embedding"]["embedding"].shape[0]
    unigram = sampling_distribution(lm_enc.ids, vocab_size)
    log_expected = jnp.asarray(np.log(np.maximum(LM_NEGATIVES * unigram, 1e-30)), jnp.float32)
    batches_per_epoch = len(plan_batches(lm_enc.n_tokens, config.max_tokens, spec))
    optimizer = _make_optimizer(config, batches_per_epoch * config.lm_pretrain_epochs)
    hidden = params["lstm_0"]["w_hidden"].shape[1]
    embed_dim = params["embedding"]["embedding"].shape[1]
    lm = {"model": lm_parameters(params), "head": init_lm_head(hidden, embed_dim, unigram, config.seed)}
    opt_state = optimizer.init(lm)
    state = TrainState()
    meta = {"train_config": config.to_dict(), "stage": "language model", **_lm_data_meta(lm_record)}
    if resume and checkpoint.exists():
        trees, opt_state, state, saved_meta = checkpoint.load(opt_state)
        _require_same_settings(saved_meta, config, directory, lm_record, CLASSIFIER_ONLY_SETTINGS)
        lm = trees["params"]
        if state.epoch < config.lm_pretrain_epochs:
            log(f"resuming language-model pretraining after epoch {state.epoch} (step {state.step})")

    def loss_of(lm_tree, ids, lengths, negatives, key):
        return lm_loss(lm_tree["model"], lm_tree["head"], ids, lengths, negatives, log_expected, key)

    @jax.jit
    def step(lm_tree, opt_state, ids, lengths, negatives, key):
        (loss, count), grads = jax.value_and_grad(loss_of, has_aux=True)(
            lm_tree, ids, lengths, negatives, key
        )
        updates, opt_state = optimizer.update(grads, opt_state, lm_tree)
        return optax.apply_updates(lm_tree, updates), opt_state, loss, count

    evaluate_loss = jax.jit(loss_of)

    def valid_loss(lm_tree) -> float:
        """Held-out next-token loss, against a fixed draw of negatives, without dropout."""
        rng = np.random.default_rng([config.seed, 1])
        negatives = rng.choice(vocab_size, LM_NEGATIVES, p=unigram).astype(np.int32)
        total = count_sum = 0.0
        for batch in plan_batches(valid_enc.n_tokens, config.max_tokens, spec):
            ids, lengths = pad_batch(
                valid_enc.ids, valid_enc.offsets, batch, config.max_tokens, config.head_tokens
            )
            loss, count = evaluate_loss(lm_tree, ids, lengths, negatives, None)
            total += float(loss) * float(count)
            count_sum += float(count)
        return total / max(count_sum, 1.0)

    base_key = jax.random.PRNGKey(config.seed + 7919)  # not the classifier's dropout stream
    for epoch in range(state.epoch, config.lm_pretrain_epochs):
        started = time.perf_counter()
        rng = np.random.default_rng([config.seed, epoch, 2])
        plan = plan_batches(lm_enc.n_tokens, config.max_tokens, spec, rng=rng)
        total = count_sum = 0.0
        bar = _progress(len(plan), f"language model {epoch + 1}/{config.lm_pretrain_epochs}", progress)
        for batch in plan:
            ids, lengths = pad_batch(lm_enc.ids, lm_enc.offsets, batch, config.max_tokens, config.head_tokens)
            negatives = rng.choice(vocab_size, LM_NEGATIVES, p=unigram).astype(np.int32)
            key = jax.random.fold_in(base_key, state.step)
            lm, opt_state, loss, count = step(lm, opt_state, ids, lengths, negatives, key)
            state.step += 1
            total += float(loss) * float(count)
            count_sum += float(count)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        elapsed = time.perf_counter() - started
        state.seconds += elapsed
        record = {
            "epoch": epoch + 1,
            "train_loss": total / max(count_sum, 1.0),
            "valid_loss": valid_loss(lm),
            "seconds": round(elapsed, 1),
        }
        state.history.append(record)
        state.epoch = epoch + 1
        checkpoint.save({"params": lm, "ema": lm, "best": lm}, opt_state, state, meta)
        log(
            f"language model epoch {epoch + 1}: next-token loss {record['train_loss']:.4f} | "
            f"valid {record['valid_loss']:.4f} | {elapsed:.0f}s"
        )
    stage = {
        "epochs": config.lm_pretrain_epochs,
        "sampled_negatives": LM_NEGATIVES,
        "dropout": LM_DROPOUT,
        "history": state.history,
        "seconds": round(state.seconds, 1),
    }
    return lm["model"], stage


def greedy_epoch_average(
    history: list[dict],
    best_epoch: int,
    weights_of: Callable[[int], dict],
    valid_accuracy: Callable[[dict], float],
) -> tuple[dict, dict]:
    """A "greedy soup" (Wortsman et al., 2022) of one run's epochs: starting from the best epoch, the
    others in order of validation accuracy (later first on ties) join the uniform average only when
    validation accuracy does not drop. Averaging flattens the late-epoch overfitting a single
    checkpoint carries, and the choice, like every other, is made on the validation split alone.
    """
    accuracy = {r["epoch"]: r["valid_accuracy"] for r in history}
    others = sorted((e for e in accuracy if e != best_epoch), key=lambda e: (-accuracy[e], -e))
    chosen, total = [best_epoch], weights_of(best_epoch)
    average, score = total, accuracy[best_epoch]
    tried = []
    for epoch in others:
        candidate_total = jax.tree_util.tree_map(jnp.add, total, weights_of(epoch))
        candidate = _divided(candidate_total, len(chosen) + 1)
        candidate_score = valid_accuracy(candidate)
        tried.append({"epoch": epoch, "valid_accuracy": candidate_score})
        if candidate_score >= score:
            chosen.append(epoch)
            total, average, score = candidate_total, candidate, candidate_score
    return average, {"epochs": chosen, "valid_accuracy": score, "tried": tried}


def _initial_bundle(config: TrainConfig, vectors: WordVectors, valid_data: LabeledData) -> Bundle:
    """The bundle --init-model names, checked against this run: training continues from its weights and
    vocabulary (a fine-tune, e.g. with a small learning rate and --average-epochs).

    The validation rows must be the ones the bundle was trained with: any other split would hold rows
    the bundle has learned, and every choice made on it (best epoch, average, temperature) would
    silently favour memorisation (a different --seed re-splits: validation accuracy 0.98 instead of
    0.90 on IMDb). The architecture must match too.
    """
    from batchscore.bundle import load_bundle

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


def _divided(tree: dict, n: int) -> dict:
    return jax.tree_util.tree_map(lambda t: t / n, tree)


def reference_profile(
    encoded: Encoded, prob_positive: np.ndarray, labels: tuple[str, str], max_tokens: int
) -> dict:
    """The card's reference for drift statistics (drift.py): the validation rows as the shipped model
    scores them, in the same form as every run's profile."""
    profile = Profile(labels, max_tokens)
    scored = encoded.n_tokens > 0
    profile.add(encoded.ids, encoded.n_tokens[scored], prob_positive[scored])
    return {**profile.to_dict(), "source": "validation split"}


def as_shipped(params: dict) -> dict:
    """Parameters rounded to the bundle's WEIGHTS_DTYPE and back to float32: what a loaded bundle holds."""
    return jax.tree_util.tree_map(lambda a: np.asarray(a, WEIGHTS_DTYPE).astype(np.float32), params)


def _headline(report: dict) -> dict:
    return {k: report[k] for k in ("rows", "accuracy", "roc_auc", "ece", "log_loss")}


def _coverage(encoded: Encoded, found: np.ndarray) -> float:
    return float(found[encoded.ids].mean()) if encoded.ids.size else 0.0


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, mininterval=1.0)


def run_training(
    *,
    train_path: Path,
    valid_path: Path | None,
    valid_fraction: float,
    test_path: Path | None,
    embeddings: str,
    output: Path,
    checkpoint_dir: Path | None,
    resume: bool,
    text_column: str,
    label_column: str,
    progress: bool | None,
    command: str,
    log: Callable[[str], None],
    lm_data: tuple[str, ...] = (),
    **hyper,
) -> TrainResult:
    """The `batchscore train` job: read data, train, calibrate, write the bundle, report."""
    import sys

    from batchscore.datasets import read_labeled, read_unlabeled, split_validation
    from batchscore.embeddings import load_word_vectors

    config = TrainConfig(**{**hyper, "init_model": str(hyper.get("init_model") or "")})
    if lm_data:
        _require_pretraining(config)  # before anything is read
    data = read_labeled(train_path, text_column, label_column)
    if valid_path is not None:
        train_data, valid_data = data, read_labeled(valid_path, text_column, label_column)
    else:
        train_data, valid_data = split_validation(data, valid_fraction, config.seed)
    train_data.require_both_labels("training")
    valid_data.require_both_labels("validation")
    log(f"training rows {len(train_data)}, validation rows {len(valid_data)}")
    lm_text = read_unlabeled(lm_data, text_column) if lm_data else None
    vectors = load_word_vectors(embeddings)
    checkpoint_dir = checkpoint_dir or output.with_name(output.name + ".checkpoint")
    show = sys.stderr.isatty() if progress is None else progress
    result = train(
        train_data,
        valid_data,
        vectors,
        config,
        checkpoint_dir,
        resume=resume,
        log=log,
        progress=show,
        card_extra={"command": command, "seed": config.seed},
        lm_text=lm_text,
    )
    bundle = result.bundle  # its params are already as_shipped(): what is tested is what ships
    if test_path is not None:
        test = read_labeled(test_path, text_column, label_column)
        report = evaluate_bundle(bundle, test)
        log(f"test accuracy {report['accuracy']:.4f}, ECE {report['ece']:.4f} ({len(test)} rows)")
        card = {
            **bundle.card,
            "test_data": {"source": test.source, "rows": len(test), "sha256": test.content_sha256()},
            "test_metrics": {**_headline(report), "accuracy_by_length": report["accuracy_by_length"]},
        }
        bundle = replace(bundle, card=card)
    bundle = replace(bundle, name=output.resolve().name)  # its own name in every output it scores
    sha = save_bundle(bundle, output, weights_dtype=WEIGHTS_DTYPE)
    log(f"wrote model bundle {output} (weights sha256 {sha[:12]})")
    return result


def bundle_probabilities(
    bundle: Bundle, texts: pa.Array, spec: BucketSpec | None = None
) -> tuple[Encoded, np.ndarray]:
    """The encoded texts and prob_positive as the bundle scores them (its temperature applied)."""
    encoded = encode(texts, bundle.vocab, bundle.tokenizer)
    scorer = Scorer(bundle.model, bundle.params, Truncation(bundle.max_tokens, bundle.head_tokens), spec)
    return encoded, softmax(scorer.logits(encoded), bundle.temperature)[:, 1]


def evaluate_bundle(
    bundle: Bundle, data: LabeledData, spec: BucketSpec | None = None, against: Bundle | None = None
) -> dict:
    """Full metrics of a bundle on labeled data, with the bundle's temperature applied; with
    `against`, also the paired comparison with that bundle on the same rows (key "comparison")."""
    encoded, probs = bundle_probabilities(bundle, data.texts, spec)
    scored = encoded.n_tokens > 0  # what `run` scores: a text with no tokens is its "empty text" error
    if not scored.any():
        raise DataError(f"{data.source}: no row has any text to score (every text is empty)")
    labels = data.labels[scored]
    report = classification_report(probs[scored], labels, encoded.n_tokens[scored], label_names=bundle.labels)
    report["unscored_rows"] = {EMPTY_TEXT: int((~scored).sum())} if not scored.all() else {}
    if against is not None:
        if against.labels != bundle.labels:
            raise UsageError(f"cannot compare models with labels {bundle.labels} and {against.labels}")
        _, other_probs = bundle_probabilities(against, data.texts, spec)
        report["comparison"] = paired_comparison(probs[scored], other_probs[scored], labels)
    return report


def add_reference_profile(
    model_dir: Path,
    train_path: Path,
    valid_path: Path | None,
    valid_fraction: float,
    text_column: str,
    label_column: str,
) -> dict:
    """Give a bundle trained before drift profiles existed its reference, from its own validation
    rows: the split is redone as training did it (the card's seed) and must hash to the card's
    valid_data sha256, so the reference cannot silently come from other data."""
    from batchscore.bundle import load_bundle, save_config
    from batchscore.datasets import DataError, read_labeled, split_validation

    bundle = load_bundle(model_dir)
    if valid_path is not None:
        valid = read_labeled(valid_path, text_column, label_column)
    else:
        seed = bundle.card.get("train_config", {}).get("seed", 0)
        valid = split_validation(read_labeled(train_path, text_column, label_column), valid_fraction, seed)[1]
    expected = bundle.card.get("valid_data", {}).get("sha256")
    if expected is not None and valid.content_sha256() != expected:
        raise DataError(
            f"{valid.source}: these validation rows (sha256 {valid.content_sha256()[:12]}) are not the ones "
            f"{model_dir} was trained with (card: {expected[:12]}); pass the training data and "
            "--valid-fraction that training used"
        )
    encoded, probs = bundle_probabilities(bundle, valid.texts)
    profile = reference_profile(encoded, probs, bundle.labels, bundle.max_tokens)
    save_config(replace(bundle, card={**bundle.card, "reference_profile": profile}), model_dir)
    return profile
