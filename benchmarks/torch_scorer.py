"""The PyTorch scorer a good engineer would write (the end-to-end reference).

Lean on purpose, so the comparison is not against a straw man: pyarrow in and out (no pandas),
the bundle's files read directly (no batchscore or JAX import), precompiled regexes and a dict
lookup per review, head + tail truncation as batchscore does, length-sorted batches of 256 through
a packed `nn.LSTM` under `torch.inference_mode`, every core. Usage:
    python -m benchmarks.torch_scorer INPUT.parquet OUTPUT.parquet [BUNDLE_DIR] [DEVICE]
(DEVICE: cpu, the default, or cuda: batches of 2,048 then.)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.numpy import load_file
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from benchmarks.lean_text import DEFAULT_BUNDLE, encode, python_tokenize  # noqa: F401 (re-exported)


class TorchBiLSTM(nn.Module):
    """The bundle's architecture in PyTorch: packed BiLSTM, head over first, last and pooled outputs."""

    def __init__(self, config: dict, weights: dict[str, np.ndarray]):
        super().__init__()
        hidden, layers = config["hidden"], config["num_layers"]
        self.pooling = tuple(config.get("pooling", ()))
        self.embedding = nn.Embedding(config["vocab_size"], config["embed_dim"], padding_idx=0)
        self.lstm = nn.LSTM(
            config["embed_dim"], hidden, num_layers=layers, bidirectional=True, batch_first=True
        )
        self.head = nn.Linear(2 * hidden * (2 + len(self.pooling)), config["num_classes"])
        with torch.no_grad():
            self.embedding.weight.copy_(torch.from_numpy(weights["embedding/embedding"]))
            for layer in range(layers):
                for direction, suffix in ((0, ""), (1, "_reverse")):
                    # batchscore stores x @ W (D, 4H) with gates i, f, g, o: PyTorch's order, transposed
                    name = f"l{layer}{suffix}"
                    w_in, w_h = (weights[f"lstm_{layer}/{k}"][direction].T for k in ("w_input", "w_hidden"))
                    getattr(self.lstm, f"weight_ih_{name}").copy_(torch.from_numpy(w_in.copy()))
                    getattr(self.lstm, f"weight_hh_{name}").copy_(torch.from_numpy(w_h.copy()))
                    getattr(self.lstm, f"bias_ih_{name}").copy_(
                        torch.from_numpy(weights[f"lstm_{layer}/bias"][direction])
                    )
                    getattr(self.lstm, f"bias_hh_{name}").zero_()
            self.head.weight.copy_(torch.from_numpy(weights["head/kernel"].T.copy()))
            self.head.bias.copy_(torch.from_numpy(weights["head/bias"]))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.embedding(ids), lengths, batch_first=True, enforce_sorted=True)
        out, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True)
        lengths = lengths.to(out.device)  # packing wants them on the CPU, the head beside the outputs
        features = [out[:, 0], out[torch.arange(out.shape[0], device=out.device), lengths - 1]]
        real = (torch.arange(out.shape[1], device=out.device)[None, :] < lengths[:, None])[:, :, None]
        for kind in self.pooling:  # over real positions only (padded outputs are zero)
            if kind == "max":
                features.append(out.masked_fill(~real, float("-inf")).amax(dim=1))
            else:
                features.append(out.sum(dim=1) / lengths[:, None].to(out.dtype))
        return self.head(torch.cat(features, dim=1))


def load_model(bundle_dir: Path) -> tuple[TorchBiLSTM, dict, dict[str, int]]:
    config = json.loads((bundle_dir / "config.json").read_text())
    model = TorchBiLSTM(config["model"], load_file(str(bundle_dir / "weights.safetensors"))).eval()
    tokens = (bundle_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    return model, config, {token: i for i, token in enumerate(tokens[: config["model"]["vocab_size"]])}


def from_bundle(bundle) -> TorchBiLSTM:
    """The same model from a loaded batchscore bundle (for the in-process forward comparisons)."""
    from batchscore.model.bilstm import flatten_params

    weights = {name: np.asarray(value) for name, value in flatten_params(bundle.params).items()}
    return TorchBiLSTM(bundle.model.to_dict(), weights).eval()


def torch_logits(
    model: TorchBiLSTM, rows: list[np.ndarray], batch_size: int = 256, device: str = "cpu"
) -> np.ndarray:
    """Logits in input order: sort by length, pack each batch, run on `device`, put back."""
    lengths = np.array([max(1, r.size) for r in rows])
    order = np.argsort(-lengths, kind="stable")
    out = np.zeros((len(rows), model.head.out_features), np.float32)
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = order[start : start + batch_size]
            ids = np.zeros((chunk.size, lengths[chunk[0]]), np.int64)
            for j, i in enumerate(chunk):
                ids[j, : rows[i].size] = rows[i]
            logits = model(torch.from_numpy(ids).to(device), torch.from_numpy(lengths[chunk]))
            out[chunk] = logits.cpu().numpy()
    return out


def main(source: str, target: str, bundle_dir: str | None = None, device: str = "cpu") -> None:
    torch.set_num_threads(os.cpu_count() or 1)
    model, config, index = load_model(Path(bundle_dir) if bundle_dir else DEFAULT_BUNDLE)
    model.to(device)
    table = pq.read_table(source)
    rows = encode(table.column("text").to_pylist(), index, config["max_tokens"], config["head_tokens"])
    logits = torch_logits(model, rows, 2048 if device == "cuda" else 256, device)
    probs = torch.softmax(torch.from_numpy(logits) / config["temperature"], dim=1).numpy()
    positive = probs[:, 1] >= 0.5
    out = table.drop_columns(["text"]).append_column("prob_positive", pa.array(probs[:, 1]))
    pq.write_table(out.append_column("label", pa.array(np.where(positive, "positive", "negative"))), target)


if __name__ == "__main__":
    main(*sys.argv[1:])
