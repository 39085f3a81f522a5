"""Shared fixtures: a small random model bundle and synthetic review tables."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchscore.model.bilstm import ModelConfig
from batchscore.model.bundle import Bundle, save_bundle
from batchscore.model.network import init_params
from batchscore.text.tokenizer import TokenizerConfig
from batchscore.text.vocab import Vocab
from tests.helpers import WORDS, random_review

# Compiled programs are shared by the test processes (the CLI subprocesses too), never ~/.cache.
os.environ.setdefault("BATCHSCORE_COMPILATION_CACHE", tempfile.mkdtemp(prefix="batchscore-jax-"))


def pytest_report_header(config) -> list[str]:
    """Say which CPU ran the suite: rounding (and so a failing bit-identity test) depends on it."""
    from batchscore.inference.device import cpu_summary

    return [f"batchscore CPU: {cpu_summary()}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"]


def pytest_collection_modifyitems(config, items) -> None:
    """The longest tests first: the CPU probes (the emulated one takes one to three minutes), then training (a
    minute or two each). Collected late, they left one of the two workers running them alone for the
    suite's last minutes."""
    first = ("tests/faults/test_portability.py", "tests/training/")

    def rank(item) -> int:
        return next((i for i, prefix in enumerate(first) if item.nodeid.startswith(prefix)), len(first))

    items.sort(key=rank)


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


@pytest.fixture
def job_setup(tmp_path, tiny_bundle, reviews_table) -> Path:
    for day, rows in (("2026-11-27", slice(0, 120)), ("2026-11-28", slice(120, 300))):
        folder = tmp_path / "landing" / day
        folder.mkdir(parents=True)
        part = reviews_table.slice(rows.start, rows.stop - rows.start)
        pq.write_table(part.slice(0, 50), folder / "a.parquet")
        pq.write_table(part.slice(50), folder / "b.parquet")
    spec = tmp_path / "nightly.toml"
    spec.write_text(
        "[job]\n"
        'name = "nightly_test"\n'
        f'input = "{tmp_path}/landing/{{date}}/*.parquet"\n'
        f'output = "{tmp_path}/scored"\n'
        f'model = "{tiny_bundle}"\n'
        'id_column = "review_id"\n'
        "max_error_rate = 0.1\n"
    )
    return spec
