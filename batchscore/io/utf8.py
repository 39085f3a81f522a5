"""Text bytes as valid UTF-8: the one gate between a stray Latin-1 byte and an output file that
pandas and DuckDB refuse to open."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def decode_utf8(array: pa.Array, replace: bool) -> tuple[pa.Array, np.ndarray | int]:
    """String or binary values as a valid UTF-8 string array.

    replace=False: invalid values become null, and the boolean mask of those rows is returned.
    replace=True: invalid bytes become U+FFFD, and the number of values changed is returned.
    Arrow does not validate UTF-8 when reading Parquet or (here) CSV, so this is the only gate
    between a stray Latin-1 byte and an output file that pandas and DuckDB refuse to open.
    """
    as_bytes = array
    if pa.types.is_string(array.type):
        as_bytes = array.view(pa.binary())
    elif pa.types.is_large_string(array.type):
        as_bytes = array.view(pa.large_binary())
    try:  # the binary -> string cast is Arrow's UTF-8 check
        strings = as_bytes.cast(pa.large_string() if pa.types.is_large_binary(as_bytes.type) else pa.string())
        return strings.cast(pa.string()), (0 if replace else np.zeros(len(array), bool))
    except pa.ArrowInvalid:
        pass
    # Slow path, only for windows that hold a bad value: find which rows fail.
    values: list[str | None] = []
    invalid = np.zeros(len(array), bool)
    for i, raw in enumerate(as_bytes.to_pylist()):
        if raw is None:
            values.append(None)
            continue
        try:
            values.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            invalid[i] = True
            values.append(raw.decode("utf-8", "replace") if replace else None)
    return pa.array(values, pa.string()), (int(invalid.sum()) if replace else invalid)
