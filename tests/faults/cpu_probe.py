"""Scores of one synthetic set under several batch plans, as JSON: run by test_portability under an
emulated CPU (qemu), so that a machine with AVX-512 also checks what an AVX2-only machine computes."""

from __future__ import annotations

import json
import random
import sys

import jax
import numpy as np
import pyarrow as pa

from batchscore.inference.batching import BucketSpec
from batchscore.inference.forward import Scorer, Truncation
from batchscore.model.bilstm import ModelConfig
from batchscore.model.network import init_params
from batchscore.text.encoding import encode
from batchscore.text.tokenizer import TokenizerConfig
from batchscore.text.vocab import Vocab
from tests.helpers import WORDS, random_review


def differing(a: np.ndarray, b: np.ndarray) -> int:
    return int((a != b).sum())


def main() -> None:
    vocab = Vocab(["<pad>", "<unk>", *WORDS, ".", "!", "?"])
    # Natively, the bundled model's sizes: the kernels (and remainder blocks) of a real model's shapes.
    # Under an emulator (--small) a small model, whose compiles and products fit the suite's time.
    small = "--small" in sys.argv
    config = ModelConfig(
        vocab_size=len(vocab),
        embed_dim=8 if small else 50,
        hidden=6 if small else 100,
        num_layers=2,
        pooling=("max",) if small else ("max", "mean"),
    )
    # One compiled program: an eager initialisation compiles each of its ~90 small operations, about a
    # second each under an emulator. Any weights serve: every check compares this process with itself.
    params = jax.jit(init_params, static_argnums=(0, 1))(config, 3)
    rng = random.Random(11)
    texts = [random_review(rng, rng.choice([1, 3, 8, 20, 40, 70, 120])) for _ in range(300)]
    encoded = encode(pa.array(texts), vocab, TokenizerConfig())
    # Batches of 48, 96 and 192 rows, natively at two widths (16 and 48). Under an emulator every
    # program compiles for ten seconds or more, so there one width (16) carries the three row counts.
    truncation = Truncation(16, 4) if small else Truncation(48, 12)
    scorer = Scorer(config, params, truncation, BucketSpec(boundaries=(16,), token_budget=16384))
    together = scorer.logits(encoded)
    small_spec = BucketSpec(boundaries=(16,), token_budget=1024)  # 48-row batches only
    small_batches = Scorer(config, params, truncation, small_spec).logits(encoded)
    order = np.random.default_rng(0).permutation(len(texts))
    windows = [scorer.logits(encoded, np.arange(s, min(s + 37, 300))) for s in range(0, 300, 37)]
    alone = [differing(scorer.logits(encoded, np.array([r]))[0], together[r]) for r in (0, 7, 299)]
    from numpy._core._multiarray_umath import __cpu_features__ as features  # numpy's own cpuid reading

    print(
        json.dumps(
            {
                "avx2": bool(features.get("AVX2")),
                "avx512f": bool(features.get("AVX512F")),
                "permuted": differing(scorer.logits(encoded, order), together[order]),
                "every_third": differing(scorer.logits(encoded, np.arange(0, 300, 3)), together[::3]),
                "alone": sum(alone),
                "windows_of_37": differing(np.concatenate(windows), together),
                "other_batch_sizes": differing(small_batches, together),
            }
        )
    )


if __name__ == "__main__":
    main()
