"""Shared fixtures: a small random model bundle and synthetic review tables."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from batchscore.bundle import Bundle, save_bundle
from batchscore.model import ModelConfig, init_params
from batchscore.report import RunSummary
from batchscore.run.options import RunOptions
from batchscore.runner import run_scoring
from batchscore.text import TokenizerConfig
from batchscore.vocab import Vocab

# Compiled programs are shared by the test processes (the CLI subprocesses too), never ~/.cache.
os.environ.setdefault("BATCHSCORE_COMPILATION_CACHE", tempfile.mkdtemp(prefix="batchscore-jax-"))


def pytest_report_header(config) -> list[str]:
    """Say which CPU ran the suite: rounding (and so a failing bit-identity test) depends on it."""
    from batchscore.runtime import cpu_summary

    return [f"batchscore CPU: {cpu_summary()}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"]


WORDS = [
    "good",
    "great",
    "fine",
    "bad",
    "awful",
    "boring",
    "film",
    "movie",
    "plot",
    "acting",
    "story",
    "the",
    "a",
    "is",
    "was",
    "and",
    "it",
    "i",
    "loved",
    "hated",
    "music",
    "ending",
    "scene",
]


def random_review(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words)) + rng.choice([".", "!", "?"])


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A valid bundle with random weights: small enough to compile in a second or two."""
    vocab = Vocab(["<pad>", "<unk>", *WORDS, ".", "!", "?"])
    config = ModelConfig(vocab_size=len(vocab), embed_dim=8, hidden=6, num_layers=2)
    bundle = Bundle(
        name="tiny-test",
        model=config,
        tokenizer=TokenizerConfig(),
        vocab=vocab,
        params=init_params(config, seed=3),
        max_tokens=48,
        head_tokens=12,
        temperature=1.0,
        card={"purpose": "tests"},
    )
    directory = tmp_path_factory.mktemp("bundle") / "tiny"
    save_bundle(bundle, directory, weights_dtype="float32")
    return directory


@pytest.fixture
def reviews_table() -> pa.Table:
    """300 synthetic reviews with lengths spread over several buckets (some truncated)."""
    rng = random.Random(11)
    lengths = [rng.choice([1, 3, 8, 20, 40, 70, 120]) for _ in range(300)]
    return pa.table(
        {
            "review_id": pa.array(np.arange(5000, 5300), pa.int64()),
            "text": [random_review(rng, n) for n in lengths],
            "stars": pa.array([rng.randint(1, 5) for _ in lengths], pa.int8()),
        }
    )


def score_files(paths, output, bundle, **options) -> RunSummary:
    """`batchscore run` through the library, quietly."""
    return run_scoring(
        [str(p) for p in paths],
        str(output) if output else None,
        bundle,
        RunOptions(**options),
        progress=False,
        log=lambda m: None,
    )
