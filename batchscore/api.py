"""The Python API: score in-memory texts, Arrow tables and pandas frames with a loaded model.

For notebooks, orchestrator tasks (Airflow, Dagster) and other engines (Spark, Ray Data, DuckDB)
that already hold the data. It is the CLI's own path: the same tokenizer, bucketing, batching,
truncation, temperature and output columns as `batchscore run`, so the values are identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

from batchscore.bundle import Bundle, load_bundle
from batchscore.pipeline import OUTPUT_COLUMNS, RunOptions, ScoringJob, output_names
from batchscore.validation import INVALID_UTF8, not_string

SCORE_COLUMNS = [c for c in OUTPUT_COLUMNS if c != "row"]
_PANDAS_TYPES = {
    pa.string(): pd.StringDtype(),
    pa.float32(): pd.Float32Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


class Model:
    """A loaded model bundle, ready to score. One instance can be shared by many threads.

    Compiled shapes are bucketed, so repeated calls of any size reuse the same compiled programs.
    A bad row (null, empty, not text) gets an `error` and null scores, never an exception.
    """

    def __init__(self, bundle: Bundle, job: ScoringJob):
        self._bundle = bundle
        self._job = job

    @property
    def bundle(self) -> Bundle:
        return self._bundle

    @property
    def info(self) -> dict:
        """Name, hashes, labels, truncation, temperature and the model card's metrics."""
        bundle, card = self._bundle, self._bundle.card
        return {
            "name": bundle.name,
            "weights_sha256": bundle.weights_sha256,
            "bundle_sha256": bundle.bundle_sha256,
            "labels": list(bundle.labels),
            "max_tokens": self._job.truncation.max_tokens,
            "head_tokens": self._job.truncation.head_tokens,
            "temperature": bundle.temperature,
            "compute": self._job.compute,
            "valid_metrics": card.get("valid_metrics", {}),
            "test_metrics": card.get("test_metrics", {}),
        }

    def predict(self, texts: Sequence[str | None] | str | pa.Array | pa.ChunkedArray) -> pd.DataFrame:
        """One row per text, in order: label, prob_positive, prob_negative, n_tokens, truncated, error.

        A single string is one text (not one per character); an Arrow array is checked like a file's
        column (so a non-string array gives every row that type's error).
        """
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(texts, pa.Array | pa.ChunkedArray):
            table = pa.table({"text": texts})
            return _to_pandas(self._job.score_table(table, "text").select(SCORE_COLUMNS))
        return self._score_values(list(texts))

    def _score_values(self, values: list) -> pd.DataFrame:
        """Python objects, as a list or an object column may hold them: a value that is not a string
        (a number among texts) is that row's error, as in a file, not an exception for the call."""
        texts: list[str | None] = []
        misfits: dict[int, str] = {}
        for i, value in enumerate(values):
            if isinstance(value, str):
                if value.isascii() or _encodes(value):
                    texts.append(value)
                else:  # a lone surrogate (from bytes decoded with surrogateescape): not text
                    texts.append(None)
                    misfits[i] = INVALID_UTF8
                continue
            texts.append(None)  # missing (None, NaN, pd.NA) is "null text"; anything else is named
            if not (value is None or (pd.api.types.is_scalar(value) and pd.isna(value))):
                misfits[i] = not_string(type(value).__name__)
        table = pa.table({"text": pa.array(texts, pa.string())})
        scores = _to_pandas(self._job.score_table(table, "text").select(SCORE_COLUMNS))
        for row, reason in misfits.items():
            scores.loc[row, "error"] = reason
        return scores

    def score_table(self, table: pa.Table, text_column: str = "text") -> pa.Table:
        """The table's columns (the text dropped, clashing names prefixed `input_`) plus the scores:
        exactly what `batchscore run --id-column ... --no-provenance` writes for the same rows."""
        return self._job.score_table(table, text_column)

    def score_frame(self, frame: pd.DataFrame, text_column: str = "text") -> pd.DataFrame:
        """score_table for pandas: the frame's own columns, dtypes and index are kept as they are."""
        if text_column not in frame.columns:
            raise KeyError(f"no text column {text_column!r}; columns are {list(frame.columns)}")
        column = frame[text_column]
        if column.dtype == object:  # plain Python values, possibly mixed: checked one by one
            scores = self._score_values(column.tolist())
        else:  # typed (string, categorical, numeric): the same column checks as a file's
            try:
                texts = pa.Table.from_pandas(frame[[text_column]], preserve_index=False)
            except UnicodeEncodeError:  # a lone surrogate in a string column: that row's error
                scores = self._score_values(column.tolist())
            else:
                scores = _to_pandas(self._job.score_table(texts, text_column).select(SCORE_COLUMNS))
        scores.index = frame.index
        names = output_names(list(frame.columns), text_column, keep_text=False)
        kept = frame[list(names)].rename(columns=names)
        return pd.concat([kept, scores], axis=1)


def load_model(
    path: Path | str | None = None,
    *,
    device: str = "auto",
    max_tokens: int | None = None,
    precision: str = "float32",
) -> Model:
    """Load a model bundle (None: the bundled IMDb model) for in-memory scoring."""
    bundle = load_bundle(path)
    options = RunOptions(device=device, max_tokens=max_tokens, precision=precision)
    return Model(bundle, ScoringJob(bundle, options))


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Nullable pandas dtypes, so a null score stays <NA> instead of turning ints into floats."""
    return table.to_pandas(types_mapper=_PANDAS_TYPES.get)
