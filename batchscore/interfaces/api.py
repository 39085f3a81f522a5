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

from batchscore.base.environment import check_environment
from batchscore.base.errors import InputError, UsageError
from batchscore.base.settings import RUN, default
from batchscore.inference.batching import BucketSpec
from batchscore.inference.compute import local_plan, truncation_for
from batchscore.inference.outputs import SCORE_COLUMNS, OutputBuilder, output_names
from batchscore.inference.scorer import WindowScorer
from batchscore.model.bundle import Bundle, load_bundle
from batchscore.text.validation import INVALID_UTF8, not_string

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

    WINDOW_ROWS = default("window_rows")  # rows scored at once: bounds memory for a table of any size

    def __init__(
        self,
        bundle: Bundle,
        device: str = default("device"),
        max_tokens: int | None = default("max_tokens"),
        precision: str = default("precision"),
    ):
        problems = _option_problems(device, max_tokens, precision)
        if problems:
            raise UsageError("; ".join(problems))
        self._bundle = bundle
        self._truncation = truncation_for(bundle, max_tokens)
        self._compute = local_plan(device, precision, BucketSpec())
        self._scoring = WindowScorer(bundle, self._compute, self._truncation, None)

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
            "max_tokens": self._truncation.max_tokens,
            "head_tokens": self._truncation.head_tokens,
            "temperature": bundle.temperature,
            "compute": self._compute.description,
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
            return _to_pandas(self.score_table(table, "text").select(SCORE_COLUMNS))
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
        scores = _to_pandas(self.score_table(table, "text").select(SCORE_COLUMNS))
        for row, reason in misfits.items():
            scores.loc[row, "error"] = reason
        return scores

    def score_table(self, table: pa.Table, text_column: str = "text") -> pa.Table:
        """The table's columns (the text dropped, clashing names prefixed `input_`) plus the scores:
        exactly what `batchscore run --id-column ... --no-provenance` writes for the same rows.
        Thread-safe: nothing here changes the model."""
        if text_column not in table.column_names:
            raise InputError(f"no text column {text_column!r}; columns are {table.column_names}")
        builder = OutputBuilder(self._bundle, self._truncation.max_tokens, text_column)
        parts = []
        for start in range(0, max(table.num_rows, 1), self.WINDOW_ROWS):
            window = self._scoring.window(table.slice(start, self.WINDOW_ROWS), start, text_column)
            self._scoring.dispatch([window])()
            parts.append(builder.table(window, with_row=False))
        return pa.concat_tables(parts)

    def score_frame(self, frame: pd.DataFrame, text_column: str = "text") -> pd.DataFrame:
        """score_table for pandas: the frame's own columns, dtypes and index are kept as they are."""
        if text_column not in frame.columns:
            raise KeyError(f"no text column {text_column!r}; columns are {list(frame.columns)}")
        repeated = sorted({str(name) for name in frame.columns[frame.columns.duplicated()]})
        if repeated:  # as for a file: which of two same-named columns is the text, or kept, is unknowable
            raise InputError(f"the frame has repeated column names {repeated}; rename them before scoring")
        column = frame[text_column]
        if column.dtype == object:  # plain Python values, possibly mixed: checked one by one
            scores = self._score_values(column.tolist())
        else:  # typed (string, categorical, numeric): the same column checks as a file's
            try:
                texts = pa.Table.from_pandas(frame[[text_column]], preserve_index=False)
            except UnicodeEncodeError:  # a lone surrogate in a string column: that row's error
                scores = self._score_values(column.tolist())
            else:
                scores = _to_pandas(self.score_table(texts, text_column).select(SCORE_COLUMNS))
        scores.index = frame.index
        names = output_names(list(frame.columns), text_column, keep_text=False)
        kept = frame[list(names)].rename(columns=names)
        return pd.concat([kept, scores], axis=1)


def load_model(
    path: Path | str | None = None,
    *,
    device: str = default("device"),
    max_tokens: int | None = default("max_tokens"),
    precision: str = default("precision"),
) -> Model:
    """Load a model bundle (None: the bundled IMDb model) for in-memory scoring."""
    check_environment()
    return Model(load_bundle(path), device, max_tokens, precision)


def _option_problems(device: str, max_tokens: int | None, precision: str) -> list[str]:
    values = {"device": device, "max_tokens": max_tokens, "precision": precision}
    return [problem for name, value in values.items() if (problem := RUN[name].problem(value))]


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Nullable pandas dtypes, so a null score stays <NA> instead of turning ints into floats."""
    return table.to_pandas(types_mapper=_PANDAS_TYPES.get)
