"""Writes the synthetic sample reviews (reviews.parquet, reviews.csv, shards/).

Every sentence below was written for this project; no text comes from any dataset.
Run from the repository root:  python sample_data/make_samples.py
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

OPENERS = [
    "I watched this last weekend with my family.",
    "Saw it at a late screening on a rainy Tuesday.",
    "My brother talked me into this one.",
    "I finally caught up with this film on a long flight.",
    "Went in knowing nothing about it.",
    "This was the second feature at our film club.",
]
POSITIVE = [
    "The acting is superb and the story kept me hooked from start to finish.",
    "A wonderful, heartfelt movie with a brilliant lead performance.",
    "The score is gorgeous and the photography is stunning.",
    "I laughed, I cried, and I would happily watch it again tomorrow.",
    "Smart writing, great pacing and a genuinely moving ending.",
    "One of the best films I have seen this year; highly recommended!",
    "The cast has real chemistry and the dialogue sparkles.",
    "It is funny, warm and beautifully made.",
    "An excellent script and a director in full control of the material.",
    "Easily a 9/10 for me.",
]
NEGATIVE = [
    "The plot makes no sense and the acting is wooden.",
    "A dull, lifeless film that wastes a talented cast.",
    "I was bored after ten minutes and checked my watch constantly.",
    "The dialogue is awful and the jokes fall completely flat.",
    "Terrible editing, a lazy script and an ending that insults the audience.",
    "One of the worst movies I have ever sat through; avoid it.",
    "The special effects look cheap and the story is a mess.",
    "Nothing works here: not the pacing, not the music, not the characters.",
    "A tedious waste of two hours.",
    "I'd give it 2/10, and that's generous.",
]
NEUTRAL = [
    "The film runs a little over two hours.",
    "It is based on a novel I have not read.",
    "The second half takes place mostly at sea.",
    "There is a brief cameo from a well-known comedian.",
    "The version I saw was the director's cut.",
]


def review(rng: random.Random, positive: bool) -> str:
    body = POSITIVE if positive else NEGATIVE
    sentences = [rng.choice(OPENERS)]
    for _ in range(rng.randint(1, 6)):
        sentences.append(rng.choice(body) if rng.random() < 0.8 else rng.choice(NEUTRAL))
    sentences.append(rng.choice(body))
    joiner = " <br /><br />" if rng.random() < 0.3 else " "
    return joiner.join(sentences)


def build(n: int = 300, seed: int = 7) -> pa.Table:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        positive = rng.random() < 0.5
        rows.append(
            {
                "review_id": 1000 + i,
                "product": rng.choice(["film", "series", "documentary"]),
                "text": review(rng, positive),
                "expected": "positive" if positive else "negative",
            }
        )
    return pa.Table.from_pylist(rows)


def main() -> None:
    here = Path(__file__).parent
    table = build()
    pq.write_table(table, here / "reviews.parquet")
    pacsv.write_csv(table, here / "reviews.csv")
    shards = here / "shards"
    shards.mkdir(exist_ok=True)
    for i in range(3):
        part = table.slice(i * 100, 100)
        if i == 1:
            pacsv.write_csv(part, shards / f"part-{i}.csv")
        else:
            pq.write_table(part, shards / f"part-{i}.parquet")


if __name__ == "__main__":
    main()
