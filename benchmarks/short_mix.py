"""Generated short reviews, the length mix of app-store, product and restaurant feeds.

Lengths are drawn from a log-normal clipped to 3-60 tokens (mean about 18, median about 15): most
short reviews are one sentence, a few run to three. The words are assembled from phrase pools
written for this project, so no review text from any dataset is involved.

    python -m benchmarks.short_mix OUT.parquet --rows 20000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SUBJECTS = [
    "the app",
    "this blender",
    "the delivery",
    "our waiter",
    "the battery",
    "this update",
    "the soup",
    "the charger",
    "customer service",
    "the fit",
    "the screen",
    "the new menu",
    "this game",
    "the headphones",
    "the checkout",
    "the room",
    "the pasta",
    "the strap",
    "the manual",
    "the price",
]
PRAISE = [
    "works great",
    "is excellent",
    "was fantastic",
    "exceeded my expectations",
    "is worth every penny",
    "arrived early",
    "feels solid",
    "is super easy to use",
    "was friendly and fast",
    "is perfect",
    "keeps getting better",
    "tastes amazing",
    "was spotless",
    "does exactly what it says",
]
COMPLAINTS = [
    "stopped working",
    "is a waste of money",
    "was cold and bland",
    "crashes constantly",
    "broke after a week",
    "is way too slow",
    "was rude",
    "feels cheap",
    "never arrived",
    "drains my phone",
    "is confusing",
    "was overpriced",
    "keeps logging me out",
    "smelled odd",
]
TAILS = [
    "after two days",
    "on the first try",
    "for the price",
    "every single time",
    "since the update",
    "out of the box",
    "on a busy friday",
    "compared to the old one",
    "for my kids",
    "so far",
]
CLOSERS = [
    "highly recommend",
    "five stars",
    "would buy again",
    "love it",
    "one star",
    "avoid",
    "never again",
    "returning it",
    "not bad",
    "meh",
    "thanks",
    "10/10",
    "2/10",
    "so disappointed",
]
FILLERS = ["really", "honestly", "just", "pretty", "very", "totally", "kind of", "still", "also"]


def token_lengths(rows: int, rng: np.random.Generator) -> np.ndarray:
    """Target token counts: log-normal, clipped to 3-60."""
    return np.clip(np.rint(rng.lognormal(mean=2.75, sigma=0.6, size=rows)), 3, 60).astype(int)


def _sentence(rng: np.random.Generator) -> list[str]:
    positive = rng.random() < 0.5
    verdict = (PRAISE if positive else COMPLAINTS)[rng.integers(len(PRAISE if positive else COMPLAINTS))]
    words = SUBJECTS[rng.integers(len(SUBJECTS))].split()
    if rng.random() < 0.4:
        words += FILLERS[rng.integers(len(FILLERS))].split()
    words += verdict.split()
    if rng.random() < 0.5:
        words += TAILS[rng.integers(len(TAILS))].split()
    return [*words, "." if rng.random() < 0.8 else "!"]


def short_review(target: int, rng: np.random.Generator) -> str:
    """One review of about `target` tokens: whole sentences, then a closer or a cut to fit."""
    words: list[str] = []
    while len(words) < target:
        words += _sentence(rng) if target - len(words) > 4 else CLOSERS[rng.integers(len(CLOSERS))].split()
    words = words[:target]
    text = " ".join(words).replace(" .", ".").replace(" !", "!")
    return text[0].upper() + text[1:]


def short_reviews(rows: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [short_review(int(n), rng) for n in token_lengths(rows, rng)]


def write_short_parquet(path: Path, rows: int, seed: int = 0) -> None:
    pq.write_table(pa.table({"id": np.arange(rows, dtype=np.int64), "text": short_reviews(rows, seed)}), path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("output", type=Path)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_short_parquet(args.output, args.rows, args.seed)


if __name__ == "__main__":
    main()
