"""Review data for training and evaluation: labeled Parquet, CSV or an aclImdb-style folder, and
unlabeled text for language-model pretraining (read by the scoring readers)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from batchscore.base.errors import InputError
from batchscore.io.csv_files import FirstInvalidRow
from batchscore.io.paths import InputFile, discover_inputs
from batchscore.io.readers import ReadOptions, ShardReader
from batchscore.text.validation import clean_texts, not_string

LABEL_NAMES = ("negative", "positive")
_SHORT_LABEL_NAMES = ("neg", "pos")  # aclImdb's folder names


class DataError(InputError, ValueError):
    """Labeled data that cannot be used as given; the message names file, row and column."""


@dataclass(frozen=True)
class LabeledData:
    texts: pa.Array  # string
    labels: np.ndarray  # int8, 1 = positive
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> LabeledData:
        return LabeledData(self.texts.take(pa.array(rows)), self.labels[rows], self.source)

    def require_both_labels(self, role: str) -> None:
        """A classifier trained, or stopped and calibrated, on one label only learns a constant:
        refused instead of written as a model that looks trained."""
        counts = np.bincount(self.labels, minlength=len(LABEL_NAMES))
        if counts.min() == 0:
            have = ", ".join(f"{n:,} {name}" for name, n in zip(LABEL_NAMES, counts, strict=True))
            raise DataError(f"{self.source}: the {role} rows hold one label only ({have}); both are needed")

    def content_sha256(self) -> str:
        """A hash of texts and labels, recorded in model cards to identify the data."""
        digest = hashlib.sha256()
        for chunk in (self.texts.buffers()[1], self.texts.buffers()[2]):
            if chunk is not None:
                digest.update(memoryview(chunk))
        digest.update(self.labels.tobytes())
        return digest.hexdigest()


def read_labeled(path: str | Path, text_column: str = "text", label_column: str = "label") -> LabeledData:
    path = Path(path)
    if path.is_dir():
        return _read_imdb_folder(path)
    name = path.name.lower()
    if not name.endswith((".parquet", ".csv", ".csv.gz")):
        raise DataError(
            f"{path}: unsupported labeled data (use .parquet, .csv, .csv.gz or an aclImdb folder)"
        )
    first_invalid = FirstInvalidRow()
    try:
        if name.endswith(".parquet"):
            table = pq.read_table(path, columns=None)
        else:  # one thread: pyarrow then numbers a malformed row (a training file reads in a second)
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(use_threads=False),
                parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=first_invalid),
            )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as err:
        kind = "Parquet" if name.endswith(".parquet") else "CSV"
        raise DataError(
            f"{path}: {first_invalid.describe() or f'not a readable {kind} file: {err}'}"
        ) from err
    for column in (text_column, label_column):
        if column not in table.column_names:
            raise DataError(f"{path}: no column {column!r}; columns are {table.column_names}")
    texts = table.column(text_column).combine_chunks()
    if not pa.types.is_string(texts.type) and not pa.types.is_large_string(texts.type):
        raise DataError(f"{path}: column {text_column!r} has type {texts.type}, expected strings")
    texts = texts.cast(pa.string())
    if texts.null_count:
        row = pc.index(pc.is_null(texts), True).as_py()
        raise DataError(f"{path}: row {row}: column {text_column!r} is null")
    if len(texts) == 0:
        raise DataError(f"{path}: no rows")
    labels = _normalise_labels(table.column(label_column).combine_chunks(), path, label_column)
    return LabeledData(texts, labels, str(path))


def _normalise_labels(column: pa.Array, path: Path, label_column: str) -> np.ndarray:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        lowered = pc.utf8_lower(pc.utf8_trim_whitespace(column))
        names = pa.array([*LABEL_NAMES, *_SHORT_LABEL_NAMES])  # index modulo 2 is the label
        column = pc.bit_wise_and(pc.index_in(lowered, value_set=names), 1)
    elif pa.types.is_boolean(column.type):
        column = column.cast(pa.int8())
    valid = (
        pc.and_(pc.is_valid(column), pc.is_in(column, value_set=pa.array([0, 1], column.type)))
        if pa.types.is_integer(column.type)
        else None
    )
    if valid is None:
        raise DataError(
            f"{path}: column {label_column!r} has type {column.type}; use 0/1, negative/positive or neg/pos"
        )
    valid = pc.fill_null(valid, False)
    if not pc.all(valid).as_py():
        row = pc.index(valid, False).as_py()
        raise DataError(
            f"{path}: row {row}: column {label_column!r} is not 0/1, negative/positive or neg/pos"
        )
    return column.to_numpy(zero_copy_only=False).astype(np.int8)


def _read_imdb_folder(path: Path) -> LabeledData:
    """`<split>/pos/*.txt` and `<split>/neg/*.txt`; a root with `train/` means the train split."""
    if not (path / "pos").is_dir() and (path / "train" / "pos").is_dir():
        path = path / "train"
    texts: list[str] = []
    labels: list[int] = []
    for label, sub in ((0, "neg"), (1, "pos")):
        folder = path / sub
        if not folder.is_dir():
            raise DataError(f"{path}: expected an aclImdb-style folder with pos/ and neg/ subfolders")
        files = sorted(folder.glob("*.txt"), key=lambda p: _imdb_sort_key(p.name))
        for file in files:
            try:
                texts.append(file.read_text(encoding="utf-8"))
            except UnicodeDecodeError as err:
                raise DataError(f"{file}: not valid UTF-8 ({err})") from err
            labels.append(label)
    if not texts:
        raise DataError(f"{path}: no .txt reviews found under pos/ and neg/")
    return LabeledData(pa.array(texts, pa.string()), np.array(labels, np.int8), str(path))


def _imdb_sort_key(name: str) -> tuple[int, str]:
    stem = name.split("_", 1)[0]
    return (int(stem), name) if stem.isdigit() else (1 << 62, name)


def validation_rows(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted row numbers of a seeded, stratified validation share, so both parts keep the label
    balance (and analyses can find training's validation rows again)."""
    if not 0 < fraction < 1:
        raise DataError(f"validation fraction must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in (0, 1):
        rows = rng.permutation(np.flatnonzero(labels == label))
        chosen.append(rows[: round(rows.size * fraction)])
    return np.sort(np.concatenate(chosen))


def split_validation(data: LabeledData, fraction: float, seed: int) -> tuple[LabeledData, LabeledData]:
    valid = validation_rows(data.labels, fraction, seed)
    train = np.setdiff1d(np.arange(len(data)), valid)
    return data.take(train), data.take(valid)


@dataclass(frozen=True)
class UnlabeledText:
    """Review texts without labels, and where each came from (the model card records `sources`)."""

    texts: pa.Array  # string, none null or blank
    sources: list[dict] = field(default_factory=list)  # source, rows read, rows used, skipped, sha256

    def __len__(self) -> int:
        return len(self.texts)

    def without(self, known: pa.Array) -> tuple[UnlabeledText, int]:
        """Without the texts that are also in `known` (training or validation rows): a validation
        text read by pretraining would be seen, even if unlabeled, before it judges the model."""
        seen = pc.fill_null(pc.is_in(self.texts, value_set=known), False)
        dropped = int(pc.sum(seen).as_py() or 0)
        return UnlabeledText(self.texts.filter(pc.invert(seen)), self.sources), dropped


def read_unlabeled(specs: Sequence[str | Path], text_column: str = "text") -> UnlabeledText:
    """Texts from Parquet/CSV files, folders or globs (through the scoring readers, so the same
    files read the same way) or from a folder of .txt reviews (aclImdb's `train/unsup/`).

    Null, invalid-UTF-8 and blank texts are skipped and counted per file; a file whose text column
    is not text, or a spec with no usable text at all, is an error."""
    parts: list[pa.Array] = []
    sources: list[dict] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir() and any(path.glob("*.txt")):
            found = [_read_text_folder(path)]
        else:
            found = [_read_text_file(source, text_column) for source in discover_inputs([str(spec)])]
        if not any(len(texts) for texts, _ in found):
            read = sum(record["rows_read"] for _, record in found)
            raise DataError(f"{spec}: no usable text ({read} rows read, none with a non-blank text)")
        for texts, record in found:
            parts.append(texts)
            sources.append(record)
    return UnlabeledText(pa.concat_arrays(parts) if parts else pa.array([], pa.string()), sources)


def _usable(texts: pa.Array, reasons: np.ndarray, skipped: Counter) -> pa.Array:
    blank = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0), False)
    reasons = np.where((reasons == None) & blank.to_numpy(zero_copy_only=False), "blank text", reasons)  # noqa: E711
    skipped.update(reason for reason in reasons if reason is not None)
    return texts.filter(pa.array(reasons == None))  # noqa: E711


def _read_text_file(source: InputFile, text_column: str) -> tuple[pa.Array, dict]:
    reader = ShardReader(source, ReadOptions(text_column=text_column))
    reader.schema()
    digest = reader.content_id()
    parts: list[pa.Array] = []
    rows_read, skipped = 0, Counter()
    for window in reader.windows():
        column = window.column(text_column)
        texts, reasons = clean_texts(column)
        if len(window) and (reasons == not_string(column.type)).all():
            raise DataError(f"{source}: column {text_column!r} has type {column.type}, expected strings")
        rows_read += len(window)
        parts.append(_usable(texts, reasons, skipped))
    texts = pa.concat_arrays(parts) if parts else pa.array([], pa.string())
    return texts, _record(str(source), rows_read, len(texts), skipped, digest.removeprefix("sha256:"))


def _read_text_folder(path: Path) -> tuple[pa.Array, dict]:
    """One review per .txt file, in aclImdb's id order; sha256 over the texts in that order."""
    raw: list[bytes] = [
        file.read_bytes() for file in sorted(path.glob("*.txt"), key=lambda p: _imdb_sort_key(p.name))
    ]
    texts, reasons = clean_texts(pa.array(raw, pa.binary()))
    digest = hashlib.sha256()
    for value in raw:
        digest.update(hashlib.sha256(value).digest())
    skipped: Counter = Counter()
    usable = _usable(texts, reasons, skipped)
    return usable, _record(str(path), len(raw), len(usable), skipped, digest.hexdigest())


def _record(source: str, rows_read: int, rows: int, skipped: Counter, sha256: str) -> dict:
    return {
        "source": source,
        "rows_read": rows_read,
        "rows": rows,
        "skipped": dict(skipped),
        "sha256": sha256,
    }
