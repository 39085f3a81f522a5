"""batchscore's tokenizer rules and truncation in plain Python, for the reference scorers
(PyTorch, ONNX Runtime): no JAX, no batchscore import, a dict lookup per token."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "batchscore" / "models" / "imdb-bilstm-glove50"

_TAG = re.compile(r"<[^>]*>")
_NEGATION = re.compile(r"(\w)(n't)\b")
_CLITIC = re.compile(r"(\w)('(?:s|re|ve|ll|d|m))\b")
_TOKEN = re.compile(r"\d+(?:[.,/:]\d+)+|'(?:s|re|ve|ll|d|m)\b|\w+(?:[-']\w+)*|\.\.\.+|[^\w\s]")


def python_tokenize(text: str) -> list[str]:
    """batchscore's tokenizer rules (lowercase, no HTML tags, split contractions) as Python regexes."""
    text = _CLITIC.sub(r"\1 \2", _NEGATION.sub(r"\1 \2", _TAG.sub(" ", text.lower())))
    return _TOKEN.findall(text)


def encode(texts: list[str | None], index: dict[str, int], max_tokens: int, head: int) -> list[np.ndarray]:
    """Token ids per review, longer ones cut to their first `head` and last `max_tokens - head`."""
    rows = []
    for text in texts:
        ids = [index.get(token, 1) for token in python_tokenize(text or "")]
        if len(ids) > max_tokens:
            ids = ids[:head] + ids[len(ids) - (max_tokens - head) :]
        rows.append(np.array(ids, np.int64))
    return rows
