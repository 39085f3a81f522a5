"""Tokenizer: GloVe-style tokens, and robustness on arbitrary Unicode."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchscore.text.tokenizer import TokenizerConfig, tokenize, tokenize_array


def test_lowercases_and_strips_html_breaks():
    assert tokenize("GREAT Film<br /><br />Loved it") == ["great", "film", "loved", "it"]


def test_contractions_split_like_glove():
    assert tokenize("Don't, it's, we'll, can't") == [
        "do",
        "n't",
        ",",
        "it",
        "'s",
        ",",
        "we",
        "'ll",
        ",",
        "ca",
        "n't",
    ]


def test_punctuation_is_separate_but_ratings_and_numbers_stay_whole():
    assert tokenize("Wow!!! 7/10, cost $3.5 (well-known)...") == [
        "wow",
        "!",
        "!",
        "!",
        "7/10",
        ",",
        "cost",
        "$",
        "3.5",
        "(",
        "well-known",
        ")",
        "...",
    ]


def test_html_entities_are_decoded():
    assert tokenize("Tom &amp; Jerry &quot;classic&quot;") == ["tom", "&", "jerry", '"', "classic", '"']


def test_blank_and_control_only_texts_have_no_tokens():
    assert tokenize("") == []
    assert tokenize(" \t\n ") == []
    assert tokenize("\x00\x01\x7f") == []


def test_array_keeps_nulls_and_row_count():
    out = tokenize_array(pa.array(["a b", None, "", "c"]))
    assert out.to_pylist() == [["a", "b"], None, [], ["c"]]


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_unicode_gives_clean_tokens(text):
    tokens = tokenize(text)
    assert all(token for token in tokens)
    assert not any(ch.isspace() for token in tokens for ch in token)
    # tokenizing is stable: the tokens, re-joined and re-tokenized, come back unchanged
    assert tokenize(" ".join(tokens)) == tokens


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=50), max_size=20))
def test_vectorised_equals_one_by_one(texts):
    whole = tokenize_array(pa.array(texts, pa.string()), TokenizerConfig()).to_pylist()
    assert whole == [tokenize(t) for t in texts]
