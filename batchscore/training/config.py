"""Training settings, the progress a checkpoint records, and the rule that a checkpoint resumes only
the run that wrote it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from batchscore.base.errors import UsageError

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


# Settings the language-model stage never reads: its checkpoint serves a classifier run that differs
# only in these, so trying another classifier schedule does not repeat the pretraining.
CLASSIFIER_ONLY_SETTINGS = ("epochs", "average_epochs")


def require_same_settings(
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
    if saved_meta.get("lm_data", []) != lm_data_meta(lm_record).get("lm_data", []):
        raise UsageError(
            f"{directory}: checkpoint was made with other --lm-data (files or their contents differ); "
            "cannot resume"
        )


def lm_data_meta(lm_record: dict | None) -> dict:
    """What of the unlabeled text a checkpoint must match to resume: each file's sha256."""
    if not lm_record or "lm_data" not in lm_record:
        return {}
    return {"lm_data": [source["sha256"] for source in lm_record["lm_data"]["sources"]]}


def require_pretraining(config: TrainConfig) -> None:
    if config.lm_pretrain_epochs == 0:
        raise UsageError("--lm-data is read only by language-model pretraining: add --lm-pretrain-epochs N")
