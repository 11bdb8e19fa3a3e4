"""Exact ranking paths (quality.ranking) agree with the dense one on SciFact-sized data.

SciFact: 5,183 documents, 300 test queries. Random unit vectors stand in for embeddings: the
equality of the paths does not depend on what the vectors mean.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from embedgate.quality.metrics import top_k
from embedgate.quality.ranking import blocks, ranker, top_k_chunked, top_k_faiss

N_DOCS, N_QUERIES, DIM, K = 5183, 300, 384, 100


@pytest.fixture(scope="module")
def scifact_sized():
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((N_DOCS, DIM)).astype(np.float32)
    queries = rng.standard_normal((N_QUERIES, DIM)).astype(np.float32)
    return queries, docs


def assert_same_ranking(a, b):
    (ia, sa), (ib, sb) = a, b
    assert ia.shape == ib.shape == (N_QUERIES, K)
    assert np.array_equal(ia, ib)
    assert np.max(np.abs(sa - sb)) < 1e-6


def test_chunked_ranking_equals_dense_whatever_the_block_size(scifact_sized):
    queries, docs = scifact_sized
    dense = top_k(queries, docs, K)
    for size in (64, 1000, N_DOCS):  # a last block shorter than k too (5183 = 5*1000 + 183)
        assert_same_ranking(dense, top_k_chunked(queries, blocks(docs, size), K))


def test_chunked_ranking_reads_a_memory_mapped_corpus(scifact_sized, tmp_path):
    queries, docs = scifact_sized
    path = tmp_path / "docs.f32"
    docs.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=docs.shape)
    assert_same_ranking(top_k(queries, docs, K), top_k_chunked(queries, blocks(mapped, 700), K))


@pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss-cpu not installed")
def test_faiss_exact_index_equals_dense(scifact_sized):
    queries, docs = scifact_sized
    assert_same_ranking(top_k(queries, docs, K), top_k_faiss(queries, docs, K, add_chunk=2000))


def test_scores_are_cosines_best_first_and_k_is_capped_by_the_corpus(scifact_sized):
    queries, docs = scifact_sized
    idx, scores = top_k_chunked(queries[:3], blocks(docs[:50], 16), K)
    assert idx.shape == (3, 50)  # k larger than the corpus: all of it
    assert np.all(np.diff(scores, axis=1) <= 0)
    q = queries[0] / np.linalg.norm(queries[0])
    d = docs[idx[0, 0]] / np.linalg.norm(docs[idx[0, 0]])
    assert scores[0, 0] == pytest.approx(float(q @ d), abs=1e-6)


def test_a_ranking_that_differs_is_caught(scifact_sized):
    queries, docs = scifact_sized
    dense = top_k(queries, docs, K)
    shuffled = top_k(queries, docs[::-1], K)  # the same scores, other document numbers
    with pytest.raises(AssertionError):
        assert_same_ranking(dense, shuffled)


def test_unknown_ranking_is_a_clear_error():
    with pytest.raises(ValueError, match="not one of dense, faiss, chunked"):
        ranker("annoy")
