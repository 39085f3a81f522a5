"""A tiny, separable sentiment task and a matching GloVe file, for training tests that take seconds."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from batchscore.training.config import TrainConfig
from batchscore.training.datasets import LabeledData, split_validation
from batchscore.training.embeddings import load_word_vectors
from batchscore.training.trainer import train
from tests.helpers import QUIET

POSITIVE = ["great", "wonderful", "superb", "loved", "brilliant"]
NEGATIVE = ["awful", "boring", "terrible", "hated", "dull"]
FILLER = ["the", "movie", "film", "plot", "was", "a", "and", "it", "acting", "story"]


def toy_reviews(n: int, seed: int) -> pa.Table:
    """Separable toy task: the label decides which sentiment words appear among filler."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.random() < 0.5
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 30))]
        for _ in range(rng.randint(1, 3)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
        texts.append(" ".join(words))
        labels.append(int(label))
    return pa.table({"text": texts, "label": pa.array(labels, pa.int8())})


def write_glove(path: Path, dim: int, seed: int = 0) -> Path:
    """A small Stanford-format GloVe file (word v1 ... vdim), sentiment words on two sides."""
    rng = np.random.default_rng(seed)
    lines = []
    for word in [*POSITIVE, *NEGATIVE, *FILLER, ",", "."]:
        vector = rng.normal(0, 0.3, dim)
        vector[0] += 1.0 if word in POSITIVE else -1.0 if word in NEGATIVE else 0.0
        lines.append(word + " " + " ".join(f"{v:.5f}" for v in vector))
    path.write_text("\n".join(lines) + "\n")
    return path


def small_config(**overrides) -> TrainConfig:
    defaults = dict(
        epochs=3,
        batch_size=32,
        learning_rate=1e-2,
        warmup_steps=5,
        hidden=8,
        num_layers=2,
        max_tokens=32,
        head_tokens=8,
        min_count=1,
        max_vocab=1000,
        dropout=0.1,
        seed=1,
        boundaries=(16,),
    )
    return TrainConfig(**{**defaults, **overrides})


def labeled(table: pa.Table, source: str) -> LabeledData:
    return LabeledData(table.column("text").combine_chunks(), table.column("label").to_numpy(), source)


def toy_split(tmp_path: Path, rows: int = 300, seed: int = 1):
    """GloVe file, and a toy dataset split into train and validation parts."""
    vectors = load_word_vectors(str(write_glove(tmp_path / "g.txt", dim=6)))
    train_part, valid_part = split_validation(labeled(toy_reviews(rows, seed), "toy"), 0.2, seed=0)
    return vectors, train_part, valid_part


def interrupted_then_resumed(
    train_part, valid_part, vectors, config, directory: Path, stop_at: str, **train_options
):
    """Train until the first log line starting with `stop_at`, stopped there as by a kill, then
    resume with --resume: the run an operator gets after a crash."""

    def stop(message: str) -> None:
        if message.startswith(stop_at):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(train_part, valid_part, vectors, config, directory, progress=False, log=stop, **train_options)
    return train(train_part, valid_part, vectors, config, directory, resume=True, **QUIET, **train_options)
