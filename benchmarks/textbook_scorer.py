"""The textbook path (end-to-end reference): every review padded or cut to 500 tokens, batches of 64.

Same JAX model and weights as batchscore, but no bucketing, a Python tokenizer and
one fixed (64, 500) shape. Usage:
    python -m benchmarks.textbook_scorer INPUT.parquet OUTPUT.parquet [BUNDLE_DIR]
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from batchscore.model.bundle import load_bundle
from batchscore.model.network import forward_logits
from batchscore.model.probabilities import softmax
from benchmarks.torch_scorer import python_tokenize

PAD_TO = 500
BATCH = 64


def textbook_logits(bundle, rows: list[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(rows), 2), np.float32)
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        ids = np.zeros((BATCH, PAD_TO), np.int32)
        lengths = np.ones(BATCH, np.int32)
        for j, row in enumerate(chunk):
            row = row[:PAD_TO]
            ids[j, : len(row)] = row
            lengths[j] = max(1, len(row))
        out[start : start + len(chunk)] = np.asarray(
            forward_logits(bundle.model, bundle.params, ids, lengths)
        )[: len(chunk)]
    return out


def main(source: str, target: str, bundle_dir: str | None = None) -> None:
    bundle = load_bundle(bundle_dir)
    index = {token: i for i, token in enumerate(bundle.vocab.tokens)}
    frame = pd.read_parquet(source)
    rows = [np.array([index.get(t, 1) for t in python_tokenize(text)], np.int32) for text in frame["text"]]
    probs = softmax(textbook_logits(bundle, rows), bundle.temperature)
    out = frame.drop(columns=["text"])
    out["prob_positive"] = probs[:, 1].astype(np.float32)
    out.to_parquet(target)


if __name__ == "__main__":
    main(*sys.argv[1:])
