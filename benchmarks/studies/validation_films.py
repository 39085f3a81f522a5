"""Does the random validation split share films with training, and which models profit from that?

IMDb stores a film's reviews under consecutive ids, and its test films are not its training films. A
review and its id neighbour (same label) that share two or more rare words (cast names, titles) are
most likely about the same film. This prints how often that happens for neighbours vs random pairs,
then each bundle's validation accuracy on the rows with such a neighbour in the training part and
on the rest. With --held-out FILE it also prints, for the random validation rows, FILE's rows (a
split of the training file, e.g. from `benchmarks.studies.film_split`) and a sample of --test rows, the share
of rows that have some training row sharing >= 2 rare words with them: the closer a validation split
comes to test's share (unseen films), the less it rewards memorising films.

    python -m benchmarks.studies.validation_films [MODEL ...] [--train ../shared/data/imdb/train.parquet]
        [--held-out build/film-valid.parquet --test ../shared/data/imdb/test.parquet]
"""

from __future__ import annotations

import argparse
import random
import re
from collections import Counter, defaultdict

import numpy as np
import pyarrow.parquet as pq

from batchscore.model.bundle import load_bundle
from batchscore.model.probabilities import is_positive
from batchscore.training.datasets import read_labeled, validation_rows
from batchscore.training.evaluate import bundle_probabilities

RARE = (2, 30)  # a word in this many training reviews: specific to a few films, not to sentiment
WORD = re.compile(r"[a-z']+")


def rare_words(texts: list[str]) -> list[set[str]]:
    words = [set(WORD.findall(text.lower())) for text in texts]
    counts = Counter(w for ws in words for w in ws)
    return [{w for w in ws if RARE[0] <= counts[w] <= RARE[1]} for ws in words]


def linked_share(rare: list[set[str]], held: list[int], pool: list[int]) -> float:
    """Share of `held` rows with a `pool` row (not itself) sharing >= 2 rare words with them."""
    having = defaultdict(list)
    for row in pool:
        for word in rare[row]:
            having[word].append(row)
    linked = 0
    for row in held:
        shared = Counter(other for word in rare[row] for other in having[word])
        linked += any(count >= 2 and other != row for other, count in shared.items())
    return linked / len(held)


def print_linkage(
    train_texts: list[str],
    row_of: dict[tuple[int, int], int],
    random_valid: list[int],
    held_out_path: str,
    test_path: str,
    seed: int,
    sample: int,
) -> None:
    test_texts = pq.read_table(test_path, columns=["text"]).column("text").to_pylist()
    rare = rare_words(train_texts + test_texts)  # rarity over both files, so test words count alike
    n_train = len(train_texts)
    everything = range(n_train)

    def rest(held: list[int]) -> list[int]:
        excluded = set(held)
        return [row for row in everything if row not in excluded]

    held_table = pq.read_table(held_out_path, columns=["label", "id"]).to_pydict()
    held_out = sorted(row_of[key] for key in zip(held_table["label"], held_table["id"], strict=True))
    sampled = np.random.default_rng(seed).choice(len(test_texts), sample, replace=False)
    test_rows = (n_train + sampled).tolist()
    print("rows with a training row sharing >= 2 rare words:")
    for name, held, pool in (
        ("random validation", random_valid, rest(random_valid)),
        (held_out_path, held_out, rest(held_out)),
        (f"{test_path}, sampled", test_rows, list(everything)),
    ):
        print(f"  {name} ({len(held)} rows): {linked_share(rare, held, pool):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--train", default="../shared/data/imdb/train.parquet")
    parser.add_argument("--valid-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--held-out", help="a validation split of --train to measure against the random one")
    parser.add_argument("--test", default="../shared/data/imdb/test.parquet")
    parser.add_argument("--test-sample", type=int, default=2500)
    args = parser.parse_args()

    table = pq.read_table(args.train, columns=["label", "id"]).to_pydict()
    data = read_labeled(args.train)
    texts = data.texts.to_pylist()
    row_of = {
        (label, id_): row for row, (label, id_) in enumerate(zip(table["label"], table["id"], strict=True))
    }
    valid_rows = validation_rows(data.labels, args.valid_fraction, args.seed)  # training's own split
    if args.held_out:
        print_linkage(
            texts, row_of, valid_rows.tolist(), args.held_out, args.test, args.seed, args.test_sample
        )
    rare = rare_words(texts)

    def same_film(a: int, b: int | None) -> bool:
        return b is not None and len(rare[a] & rare[b]) >= 2

    sampler = random.Random(args.seed)
    near, far = [], []
    for row in sampler.sample(range(len(data)), args.pairs):
        neighbour = row_of.get((table["label"][row], table["id"][row] + 1))
        if neighbour is not None:
            near.append(same_film(row, neighbour))
            far.append(same_film(row, sampler.randrange(len(data))))
    print(
        f"{len(near)} pairs sharing >= 2 rare words: id neighbours {np.mean(near):.1%}, "
        f"random pairs {np.mean(far):.1%}"
    )

    valid = data.take(valid_rows)
    in_valid = set(valid_rows.tolist())
    linked = np.array(
        [
            any(
                (n := row_of.get((table["label"][row], table["id"][row] + step))) not in in_valid
                and same_film(row, n)
                for step in (-1, 1)
            )
            for row in valid_rows
        ]
    )
    print(f"validation rows with a likely same-film neighbour in training: {linked.sum()} of {linked.size}")
    for path in args.models:
        probs = bundle_probabilities(load_bundle(path), valid.texts)[1]
        right = is_positive(probs) == (valid.labels == 1)
        print(
            f"{path}: accuracy {right.mean():.4f}; with a same-film neighbour {right[linked].mean():.4f}, "
            f"without {right[~linked].mean():.4f}"
        )


if __name__ == "__main__":
    main()
