"""A PyTorch scorer written the usual way (the end-to-end reference).

pandas in, a Python-regex tokenizer and dict lookup per review, length-sorted
packed batches through nn.LSTM, pandas out. Usage:
    python -m benchmarks.torch_scorer INPUT.parquet OUTPUT.parquet [BUNDLE_DIR] [DEVICE]
(DEVICE: cpu, the default, or cuda: batches of 2,048 then.)
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import torch

from batchscore.bundle import load_bundle
from benchmarks.torch_reference import TorchBiLSTM, python_tokenize, torch_logits


def main(source: str, target: str, bundle_dir: str | None = None, device: str = "cpu") -> None:
    torch.set_num_threads(torch.get_num_threads())
    bundle = load_bundle(bundle_dir or None)
    model = TorchBiLSTM(bundle).eval().to(device)
    index = {token: i for i, token in enumerate(bundle.vocab.tokens)}
    frame = pd.read_parquet(source)
    rows = [
        np.array([index.get(t, 1) for t in python_tokenize(text)][: bundle.max_tokens], np.int32)
        for text in frame["text"]
    ]
    logits = torch_logits(model, rows, 2048 if device == "cuda" else 256, device)
    probs = torch.softmax(torch.from_numpy(logits) / bundle.temperature, dim=1).numpy()
    out = frame.drop(columns=["text"])
    out["prob_positive"] = probs[:, 1]
    out["label"] = np.where(probs[:, 1] >= 0.5, "positive", "negative")
    out.to_parquet(target)


if __name__ == "__main__":
    main(*sys.argv[1:])
