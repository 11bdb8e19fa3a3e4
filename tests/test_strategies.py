"""embedgate.api.strategies (issue 4, "Fuzzing"): the inputs reach every kind the issue lists,
stay within their bounds, and bad bounds are refused up front."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from embedgate.api import strategies as eg

QUICK = settings(max_examples=60, deadline=None, database=None, derandomize=True)


def in_range(ch: str, script: str) -> bool:
    return any(lo <= ord(ch) <= hi for lo, hi in eg.SCRIPTS[script])


@pytest.mark.parametrize("kind,found", [
    ("cjk", lambda s: any(in_range(c, "cjk") for c in s)),
    ("emoji", lambda s: any(in_range(c, "emoji") for c in s)),
    ("rtl", lambda s: any(unicodedata.bidirectional(c) in ("R", "AL") for c in s)),
    ("combining", lambda s: any(unicodedata.combining(c) for c in s)),
    ("control", lambda s: any(unicodedata.category(c) == "Cc" for c in s)),
    ("whitespace_only", lambda s: s != "" and s.isspace()),
    ("long_word", lambda s: len(s) >= 200 and " " not in s),
])
def test_strategies_texts_reach_every_kind_the_issue_lists(kind, found):
    example = find(eg.texts(max_size=50, long_word_max=300), found,
                   settings=settings(max_examples=2000, database=None))
    assert found(example)


@QUICK
@given(eg.texts(min_size=2, max_size=9, scripts=["cjk", "ascii"]))
def test_strategies_texts_respect_bounds_and_scripts(text):
    assert 2 <= len(text) <= 9
    assert all(in_range(c, "cjk") or in_range(c, "ascii") for c in text)


@QUICK
@given(eg.text_batches(min_size=1, max_size=64))
def test_strategies_batches_hold_1_to_64_strings(batch):
    assert 1 <= len(batch) <= 64 and all(isinstance(t, str) for t in batch)
    "".join(batch).encode("utf-8")  # no lone surrogates: every text is sendable as JSON/UTF-8


@QUICK
@given(eg.token_ids(vocab_size=100, max_size=10))
def test_strategies_token_ids_stay_in_the_vocabulary(ids):
    assert 1 <= len(ids) <= 10 and all(0 <= t < 100 for t in ids)


@QUICK
@given(eg.token_ids(vocab_size=100, max_size=10, invalid=True))
def test_strategies_invalid_token_ids_hold_one_outside_the_vocabulary(ids):
    assert any(t < 0 or t >= 100 for t in ids) and len(ids) <= 10


@QUICK
@given(eg.dimensions(supported=[16, 32, 64], embedding_dim=64))
def test_strategies_dimensions_are_ints(dim):
    assert isinstance(dim, int)


def test_strategies_dimensions_reach_supported_edges_and_arbitrary_sizes():
    strategy = eg.dimensions(supported=[16, 32, 64], embedding_dim=64)
    for wanted in (lambda d: d in (16, 32, 64), lambda d: d == 0, lambda d: d < 0,
                   lambda d: d == 65, lambda d: d == 17, lambda d: d > 10_000):
        assert wanted(find(strategy, wanted, settings=settings(max_examples=2000,
                                                              database=None)))


def test_strategies_dimensions_without_matryoshka_never_draw_a_supported_size():
    strategy = eg.dimensions(supported=[], embedding_dim=384)
    assert find(strategy, lambda d: d == 384, settings=settings(database=None)) == 384


@QUICK
@given(eg.token_lengths(limit=512, spread=3))
def test_strategies_token_lengths_sit_around_the_limit(n):
    assert 509 <= n <= 515


@QUICK
@given(eg.embedding_requests(model="m", supported_dims=[16, 32], embedding_dim=32,
                             max_batch=8))
def test_strategies_embedding_requests_are_well_formed_bodies(body):
    assert body["model"] == "m" and body["encoding_format"] in ("float", "base64")
    assert isinstance(body["input"], str) or 1 <= len(body["input"]) <= 8
    assert isinstance(body.get("dimensions", 0), int)


@pytest.mark.parametrize("make,match", [
    (lambda: eg.texts(min_size=5, max_size=2), "min_size <= max_size"),
    (lambda: eg.texts(scripts=["klingon"]), "subset of"),
    (lambda: eg.texts(long_word_max=-1), "long_word_max"),
    (lambda: eg.text_batches(min_size=0), "1 <= min_size"),
    (lambda: eg.token_ids(vocab_size=0), "vocab_size must be a positive int"),
    (lambda: eg.dimensions(supported=[0], embedding_dim=8), "must be ints in 1..embedding_dim"),
    (lambda: eg.dimensions(supported=[], embedding_dim=0), "embedding_dim must be"),
    (lambda: eg.token_lengths(limit=0), "limit must be an int"),
    (lambda: eg.token_lengths(limit=10, spread=-1), "spread"),
    (lambda: eg.embedding_requests(model=None, embedding_dim=8, max_batch=0), "min_size"),
])
def test_strategies_bad_bounds_are_refused_with_what_to_change(make, match):
    with pytest.raises(InvalidArgument, match=match):
        make()


def test_strategies_public_names_are_exported():
    assert set(eg.__all__) == {"SCRIPTS", "texts", "text_batches", "token_ids",
                               "token_id_batches", "dimensions", "token_lengths",
                               "embedding_requests"}
    assert all(hasattr(eg, name) for name in eg.__all__)
    assert isinstance(eg.texts(), st.SearchStrategy)
