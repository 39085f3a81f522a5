"""Spark: a DataFrame's text column scored on the executors, as `batchscore run` scores a file.

`score_dataframe(df)` returns the same DataFrame (the text column left out, clashing names prefixed
`input_`, as in a file's output) plus label, prob_positive, prob_negative, n_tokens, truncated,
error and the provenance columns. Rows travel as Arrow batches (`mapInArrow`); each Python worker
loads the bundle once and keeps it for every later task, and checks it is the bundle the driver
planned with (executors read the path from their own disks).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from batchscore.inference.outputs import (
    PROVENANCE_COLUMNS,
    PROVENANCE_TYPES,
    SCORE_SCHEMA,
    new_run_record,
    output_names,
    provenance_columns,
)
from batchscore.model.bundle import BundleError, default_bundle_path, load_bundle

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from batchscore.interfaces.api import Model

_WORKER_MODELS: dict[tuple, Model] = {}  # one per Python worker process, reused by its later tasks


def score_dataframe(
    df: DataFrame,
    model: str | Path | None = None,
    text_column: str = "text",
    *,
    provenance: bool = True,
    max_tokens: int | None = None,
    precision: str = "float32",
    device: str = "auto",
) -> DataFrame:
    """`df` with batchscore's output columns; lazy, like any DataFrame transformation.

    `model`: a bundle directory readable at the same path on every executor (None: the bundled
    model, inside the installed package). One run_id and scored_at stand for the whole call."""
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    path = str(Path(model) if model is not None else default_bundle_path())
    bundle = load_bundle(path)
    if text_column not in df.columns:
        raise KeyError(f"no text column {text_column!r}; columns are {df.columns}")
    names = output_names(df.columns, text_column, keep_text=False, provenance=provenance)
    input_schema = to_arrow_schema(df.schema)
    fields = [pa.field(names[f.name], f.type) for f in input_schema if f.name in names]
    fields += list(SCORE_SCHEMA)
    if provenance:
        fields += [
            pa.field(name, type_) for name, type_ in zip(PROVENANCE_COLUMNS, PROVENANCE_TYPES, strict=True)
        ]
    output_schema = pa.schema(fields)
    settings = (path, bundle.bundle_sha256, max_tokens, precision, device)
    run = new_run_record() if provenance else None

    original = list(df.columns)

    def score_partition(batches):
        scorer = _worker_model(*settings)
        for batch in batches:
            table = pa.Table.from_batches([batch], schema=batch.schema).rename_columns(original)
            scored = scorer.score_table(table, text_column)
            if run is not None:
                for name, column in provenance_columns(scorer.bundle, run, scored.num_rows).items():
                    scored = scored.append_column(name, column)
            yield from scored.rename_columns(output_schema.names).cast(output_schema).to_batches()

    # Spark reads a dot in a column name as a field of a struct: the columns travel under plain
    # positional names and get their own back inside the task
    plain = df.toDF(*[f"_c{index}" for index in range(len(original))])
    return plain.mapInArrow(score_partition, from_arrow_schema(output_schema))


def _worker_model(
    path: str, bundle_sha256: str, max_tokens: int | None, precision: str, device: str
) -> Model:
    """The worker's model for these settings, loaded on its first task and checked against the
    driver's bundle: another file at the same path would score under the driver's model name."""
    from batchscore.interfaces.api import load_model

    key = (path, bundle_sha256, max_tokens, precision, device)
    if key not in _WORKER_MODELS:
        model = load_model(path, max_tokens=max_tokens, precision=precision, device=device)
        if model.bundle.bundle_sha256 != bundle_sha256:
            raise BundleError(
                f"{path} on this executor is not the bundle the driver loaded (model sha256 "
                f"{model.bundle.bundle_sha256[:12]} here, {bundle_sha256[:12]} on the driver)"
            )
        _WORKER_MODELS[key] = model
    return _WORKER_MODELS[key]
