"""Split IMDb's training file into training and validation parts held out by film (approximately).

IMDb keeps a film's reviews under consecutive ids within each label, and its test films are not its
training films. A random validation split therefore shares films with training and rewards
memorising them (`python -m benchmarks.studies.validation_films`). This holds out whole blocks of
consecutive ids per label instead: a film is cut only where it straddles a block edge, or where its
positive and negative reviews land on different sides.

    python -m benchmarks.studies.film_split [--train ../shared/data/imdb/train.parquet] [--out build]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from batchscore.training.datasets import validation_rows


def film_validation_mask(
    labels: np.ndarray, ids: np.ndarray, fraction: float, block: int, seed: int
) -> np.ndarray:
    """True for the rows of a seeded, stratified `fraction` of the id blocks (training's own
    stratified draw, made over blocks instead of rows)."""
    blocks = labels.astype(np.int64) * (int(ids.max()) + block) + ids // block
    block_keys, first_row = np.unique(blocks, return_index=True)
    chosen = validation_rows(labels[first_row], fraction, seed)
    return np.isin(blocks, block_keys[chosen])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="../shared/data/imdb/train.parquet")
    parser.add_argument("--out", type=Path, default=Path("build"))
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--block", type=int, default=100, help="consecutive ids per block")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    table = pq.read_table(args.train)
    labels = table.column("label").to_numpy()
    held = film_validation_mask(labels, table.column("id").to_numpy(), args.fraction, args.block, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.filter(pa.array(~held)), args.out / "film-train.parquet")
    pq.write_table(table.filter(pa.array(held)), args.out / "film-valid.parquet")
    print(
        f"{args.out / 'film-train.parquet'}: {int((~held).sum())} rows; {args.out / 'film-valid.parquet'}: "
        f"{int(held.sum())} rows ({int(labels[held].sum())} positive)"
    )


if __name__ == "__main__":
    main()
