"""A window of input rows on its way through scoring: cleaned text, the rows that cannot be scored
and why, token ids; then the logits of the rows that can. One implementation for every engine."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from batchscore.text.encoding import Encoded, encode
from batchscore.text.tokenizer import TokenizerConfig
from batchscore.text.validation import clean_texts, mark_empty
from batchscore.text.vocab import Vocab

MIN_SLICE_ROWS = 256  # below this a window is encoded in one piece: threads would cost more than they save


@dataclass
class Window:
    """Consecutive rows of one input, starting at `first_row`; `logits` has one row per scorable row."""

    first_row: int
    table: pa.Table
    texts: pa.Array
    reasons: np.ndarray  # None where the row can be scored, else why not (the `error` column)
    encoded: Encoded
    logits: np.ndarray | None = None
    task: Any = None  # the run's FileTask of these rows (a stream carries many files); None: the API's

    @property
    def scorable(self) -> np.ndarray:
        return np.flatnonzero(self.reasons == None)  # noqa: E711


def encode_window(
    table: pa.Table,
    text_column: str,
    vocab: Vocab,
    tokenizer: TokenizerConfig,
    pool: Executor | None = None,
    slices: int = 1,
) -> tuple[pa.Array, np.ndarray, Encoded]:
    """Clean the text column, tokenize it and flag rows that cannot be scored.

    With a pool, `slices` contiguous slices of rows are encoded in its threads and joined in order:
    Arrow's compute kernels (the tokenizer, the vocabulary lookup) release the GIL, so they run in
    parallel.
    """
    column = table.column(text_column)
    if pool is None or slices < 2 or table.num_rows < 2 * MIN_SLICE_ROWS:
        return _encode_rows(column, vocab, tokenizer)
    step = -(-table.num_rows // slices)
    parts = list(pool.map(lambda start: _encode_rows(column.slice(start, step), vocab, tokenizer),
                          range(0, table.num_rows, step)))  # fmt: skip
    texts = pa.concat_arrays([texts for texts, _, _ in parts])
    reasons = np.concatenate([reasons for _, reasons, _ in parts])
    return texts, reasons, Encoded.concat([encoded for _, _, encoded in parts])


def make_window(
    table: pa.Table,
    first_row: int,
    text_column: str,
    vocab: Vocab,
    tokenizer: TokenizerConfig,
    pool: Executor | None = None,
    slices: int = 1,
) -> Window:
    texts, reasons, encoded = encode_window(table, text_column, vocab, tokenizer, pool, slices)
    return Window(first_row, table, texts, reasons, encoded)


def _encode_rows(column, vocab: Vocab, tokenizer: TokenizerConfig) -> tuple[pa.Array, np.ndarray, Encoded]:
    texts, reasons = clean_texts(column)
    encoded = encode(texts, vocab, tokenizer)
    mark_empty(reasons, encoded.n_tokens)
    return texts, reasons, encoded
