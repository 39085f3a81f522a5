"""Token <-> id mapping with reserved padding and unknown ids, stored as plain text."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1
WHITESPACE = re.compile(r"\s")  # for str patterns: exactly the characters str.isspace() accepts
SEPARATOR = "\x00"  # not whitespace, so joining cannot make a clean list look bad


def _string_array(values: list[str]) -> pa.Array:
    """An Arrow string array built from one UTF-8 buffer: pa.array() on a Python list imports pandas,
    0.2 s of every start-up that reads a vocabulary."""
    encoded = [value.encode("utf-8") for value in values]
    offsets = np.zeros(len(encoded) + 1, np.int32)
    np.cumsum([len(value) for value in encoded], out=offsets[1:])
    return pa.StringArray.from_buffers(len(encoded), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded)))


class Vocab:
    """An ordered token list; ids are positions. Id 0 pads, id 1 is any unknown token."""

    def __init__(self, tokens: Iterable[str]):
        tokens = list(tokens)
        if tokens[:2] != [PAD, UNK]:
            raise ValueError(f"a vocabulary must start with {PAD!r} and {UNK!r}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary must not repeat a token")
        # one search over all tokens; the per-token scan only to name the bad ones (0.15 s at 60k tokens)
        if "" in tokens or WHITESPACE.search(SEPARATOR.join(tokens)):
            bad = [t for t in tokens if not t or WHITESPACE.search(t)]
            raise ValueError(f"vocabulary tokens must be non-empty without whitespace: {bad[:3]!r}")
        self.tokens = tokens
        self._lookup = _string_array(tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def from_counts(cls, counts: dict[str, int], min_count: int = 1, max_size: int | None = None) -> Vocab:
        """Most frequent first (ties by token, for determinism), pruned by count and size."""
        kept = sorted(
            (t for t, c in counts.items() if c >= min_count and t not in (PAD, UNK)),
            key=lambda t: (-counts[t], t),
        )
        if max_size is not None:
            kept = kept[: max(0, max_size - 2)]
        return cls([PAD, UNK, *kept])

    def ids(self, tokens: pa.Array) -> np.ndarray:
        """Map a flat string array of tokens to int32 ids, unknowns to UNK_ID."""
        found = pc.index_in(tokens, value_set=self._lookup)
        return pc.fill_null(found, UNK_ID).to_numpy(zero_copy_only=False).astype(np.int32)

    def to_text(self) -> str:
        """vocab.txt's content: one token per line."""
        return "\n".join(self.tokens) + "\n"

    @classmethod
    def load(cls, path: Path) -> Vocab:
        return cls.from_text(path.read_text(encoding="utf-8"))

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        """A vocabulary from vocab.txt's content: one token per line."""
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return cls(lines)
