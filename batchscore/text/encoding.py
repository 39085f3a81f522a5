"""Texts -> token ids: the tokenizer and the vocabulary composed, vectorised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batchscore.text.tokenizer import TokenizerConfig, tokenize_array
from batchscore.text.vocab import Vocab


@dataclass(frozen=True)
class Encoded:
    """Token ids of many texts in one flat array; row i is ids[offsets[i]:offsets[i+1]]."""

    ids: np.ndarray  # int32
    offsets: np.ndarray  # int64, len(rows) + 1

    @property
    def n_tokens(self) -> np.ndarray:
        return np.diff(self.offsets).astype(np.int32)

    def __len__(self) -> int:
        return self.offsets.size - 1

    @staticmethod
    def concat(parts: list[Encoded]) -> Encoded:
        """The rows of several Encoded one after another (offsets shifted), as one."""
        lengths = np.concatenate([part.n_tokens for part in parts])
        offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        return Encoded(np.concatenate([part.ids for part in parts]), offsets)


def encode(texts: pa.Array, vocab: Vocab, config: TokenizerConfig) -> Encoded:
    """Tokenize and look up ids; a null text encodes as zero tokens."""
    tokens = tokenize_array(texts, config)
    offsets = tokens.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    flat = pc.list_flatten(tokens)
    return Encoded(vocab.ids(flat), offsets)
