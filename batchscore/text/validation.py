"""Per-row checks of the text column: each bad row gets a reason instead of stopping the job."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batchscore.io.utf8 import decode_utf8

NULL_TEXT = "null text"
EMPTY_TEXT = "empty text"
INVALID_UTF8 = "invalid UTF-8"


def not_string(type_: pa.DataType) -> str:
    return f"text is {type_}, not a string"


def clean_texts(column: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The column as a string array plus a reason per row (None where the row is fine).

    Rows with a reason come back as null strings so nothing downstream trips on them.
    """
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):  # Spark/pandas categoricals: score the values
        array = array.dictionary_decode()
    if pa.types.is_string_view(array.type) or pa.types.is_binary_view(array.type):
        # Arrow's view layouts (DuckDB, Polars, or a Parquet file's stored schema): the same values.
        array = array.cast(pa.binary() if pa.types.is_binary_view(array.type) else pa.string())
    n = len(array)
    reasons = np.full(n, None, dtype=object)
    type_ = array.type
    if _is_text(type_):
        texts, invalid = decode_utf8(array, replace=False)
        reasons[invalid] = INVALID_UTF8
    elif pa.types.is_null(type_):
        texts = pa.nulls(n, pa.string())
    else:
        reasons[:] = not_string(type_)
        return pa.nulls(n, pa.string()), reasons
    null_rows = pc.is_null(texts).to_numpy(zero_copy_only=False)
    reasons[null_rows & (reasons == None)] = NULL_TEXT  # noqa: E711 (object array comparison)
    return texts, reasons


def _is_text(type_: pa.DataType) -> bool:
    types = pa.types
    return (
        types.is_string(type_)
        or types.is_large_string(type_)
        or types.is_binary(type_)
        or types.is_large_binary(type_)
    )


def mark_empty(reasons: np.ndarray, n_tokens: np.ndarray) -> None:
    """Rows that tokenized to nothing (blank, whitespace or control characters only)."""
    reasons[(n_tokens == 0) & (reasons == None)] = EMPTY_TEXT  # noqa: E711
