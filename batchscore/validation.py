"""Per-row checks of the text column: each bad row gets a reason instead of stopping the job."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
    n = len(array)
    reasons = np.full(n, None, dtype=object)
    type_ = array.type
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        texts = array.cast(pa.string())
    elif pa.types.is_binary(type_) or pa.types.is_large_binary(type_):
        texts = _decode_utf8(array, reasons)
    elif pa.types.is_null(type_):
        texts = pa.nulls(n, pa.string())
    else:
        reasons[:] = not_string(type_)
        return pa.nulls(n, pa.string()), reasons
    null_rows = pc.is_null(texts).to_numpy(zero_copy_only=False)
    reasons[null_rows & (reasons == None)] = NULL_TEXT  # noqa: E711 (object array comparison)
    return texts, reasons


def _decode_utf8(array: pa.Array, reasons: np.ndarray) -> pa.Array:
    try:
        return array.cast(pa.string())
    except pa.ArrowInvalid:
        pass
    # Slow path, only for windows that hold a bad row: find which rows fail.
    values = []
    for i, raw in enumerate(array.to_pylist()):
        if raw is None:
            values.append(None)
            continue
        try:
            values.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            values.append(None)
            reasons[i] = INVALID_UTF8
    return pa.array(values, pa.string())


def mark_empty(reasons: np.ndarray, n_tokens: np.ndarray) -> None:
    """Rows that tokenized to nothing (blank, whitespace or control characters only)."""
    reasons[(n_tokens == 0) & (reasons == None)] = EMPTY_TEXT  # noqa: E711
