"""What a user would write instead: the same BiLSTM in PyTorch with packed, length-sorted batches.

The weights are copied from a batchscore bundle, so the reference must also agree
with batchscore's probabilities (a cross-check of both implementations).
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from batchscore.bundle import Bundle

# The tokenizer a user would typically write: one Python regex per review.
_TOKEN = re.compile(r"\d+(?:[.,/:]\d+)+|n't|'(?:s|re|ve|ll|d|m)\b|\w+(?:[-']\w+)*|\.\.\.+|[^\w\s]")


def python_tokenize(text: str) -> list[str]:
    text = re.sub(r"<[^>]*>", " ", text.lower())
    text = re.sub(r"(\w)(n't)\b", r"\1 \2", text)
    text = re.sub(r"(\w)('(?:s|re|ve|ll|d|m))\b", r"\1 \2", text)
    return _TOKEN.findall(text)


class TorchBiLSTM(nn.Module):
    def __init__(self, bundle: Bundle):
        super().__init__()
        cfg = bundle.model
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(
            cfg.embed_dim, cfg.hidden, num_layers=cfg.num_layers, bidirectional=True, batch_first=True
        )
        self.pooling = cfg.pooling
        self.head = nn.Linear(cfg.head_width, cfg.num_classes)
        self._load(bundle)

    def _load(self, bundle: Bundle) -> None:
        p = bundle.params
        with torch.no_grad():
            self.embedding.weight.copy_(torch.from_numpy(np.asarray(p["embedding"]["embedding"])))
            for layer in range(bundle.model.num_layers):
                lstm = p[f"lstm_{layer}"]
                for direction, suffix in ((0, ""), (1, "_reverse")):
                    # batchscore stores x @ W (D, 4H) with gates i, f, g, o: PyTorch's order, transposed
                    getattr(self.lstm, f"weight_ih_l{layer}{suffix}").copy_(
                        torch.from_numpy(np.asarray(lstm["w_input"][direction]).T.copy())
                    )
                    getattr(self.lstm, f"weight_hh_l{layer}{suffix}").copy_(
                        torch.from_numpy(np.asarray(lstm["w_hidden"][direction]).T.copy())
                    )
                    getattr(self.lstm, f"bias_ih_l{layer}{suffix}").copy_(
                        torch.from_numpy(np.asarray(lstm["bias"][direction]))
                    )
                    getattr(self.lstm, f"bias_hh_l{layer}{suffix}").zero_()
            self.head.weight.copy_(torch.from_numpy(np.asarray(p["head"]["kernel"]).T.copy()))
            self.head.bias.copy_(torch.from_numpy(np.asarray(p["head"]["bias"])))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.embedding(ids), lengths, batch_first=True, enforce_sorted=True)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True)
        lengths = lengths.to(out.device)  # packing needs them on the CPU, the head beside the outputs
        rows = torch.arange(out.shape[0], device=out.device)
        features = [out[:, 0], out[rows, lengths - 1]]
        real = (torch.arange(out.shape[1], device=out.device)[None, :] < lengths[:, None])[:, :, None]
        for kind in self.pooling:  # over real positions only, as batchscore.model.head_features
            if kind == "max":
                features.append(out.masked_fill(~real, float("-inf")).amax(dim=1))
            else:
                features.append(out.sum(dim=1) / lengths[:, None].to(out.dtype))
        return self.head(torch.cat(features, dim=1))


def torch_logits(
    model: TorchBiLSTM, rows: list[np.ndarray], batch_size: int = 256, device: str = "cpu"
) -> np.ndarray:
    """Logits in input order: sort by length, pack each batch, run (on `device`, where the model
    is), put back."""
    order = np.argsort([-len(r) for r in rows], kind="stable")
    out = np.zeros((len(rows), 2), np.float32)
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = order[start : start + batch_size]
            lengths = torch.tensor([max(1, len(rows[i])) for i in chunk])
            ids = torch.zeros((len(chunk), int(lengths.max())), dtype=torch.long)
            for j, i in enumerate(chunk):
                ids[j, : len(rows[i])] = torch.from_numpy(rows[i].astype(np.int64))
            out[chunk] = model(ids.to(device), lengths).cpu().numpy()
    return out
