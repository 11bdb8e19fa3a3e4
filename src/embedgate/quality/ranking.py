"""Exact top-k retrieval three ways: dense, an exact FAISS index, and doc-chunked streaming.

Why: `metrics.top_k` holds every document vector and a query-chunk x corpus score block in
memory, which an 8.8M-passage corpus outgrows. `top_k_chunked` takes the corpus in blocks (an
array, or a memory-mapped file on disk) and keeps only a running top-k per query; `top_k_faiss`
ranks with FAISS's exact inner-product index (`IndexFlatIP`, no approximation) on unit vectors.
All three give the same documents and the same cosine scores (float32) where they all fit.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from embedgate.quality.metrics import normalize_rows, top_k

RANKINGS = ("dense", "faiss", "chunked")
DOC_CHUNK = 65536   # documents per block: 65536 x 1024 float32 = 256 MiB
QUERY_CHUNK = 1024


def _best_first(idx: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each row, best first; equal scores by document index, as argsort is."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else \
        np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    s = np.take_along_axis(scores, part, axis=1)
    i = np.take_along_axis(idx, part, axis=1)
    order = np.lexsort((i, -s), axis=1)
    return np.take_along_axis(i, order, axis=1), np.take_along_axis(s, order, axis=1)


def top_k_chunked(query_emb: np.ndarray, doc_blocks: Iterable[np.ndarray], k: int,
                  *, query_chunk: int = QUERY_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Top k over documents that arrive in blocks (in corpus order): memory is one block and
    a (queries x (k + block)) score array, whatever the corpus size."""
    q = normalize_rows(np.asarray(query_emb, dtype=np.float32))
    best_i = np.zeros((q.shape[0], 0), dtype=np.int64)
    best_s = np.zeros((q.shape[0], 0), dtype=np.float32)
    offset = 0
    for block in doc_blocks:
        d = normalize_rows(np.asarray(block, dtype=np.float32))
        ids = np.arange(offset, offset + d.shape[0], dtype=np.int64)
        new_i, new_s = [], []
        for start in range(0, q.shape[0], query_chunk):
            sims = q[start:start + query_chunk] @ d.T
            cand_i = np.hstack([best_i[start:start + query_chunk],
                                np.broadcast_to(ids, sims.shape)])
            cand_s = np.hstack([best_s[start:start + query_chunk], sims])
            i, s = _best_first(cand_i, cand_s, k)
            new_i.append(i)
            new_s.append(s)
        best_i, best_s = np.vstack(new_i), np.vstack(new_s)
        offset += d.shape[0]
    return best_i, best_s


def blocks(doc_emb: np.ndarray, size: int = DOC_CHUNK) -> Iterable[np.ndarray]:
    """Row blocks of an array or np.memmap (a memmap block is read from disk when used)."""
    for start in range(0, doc_emb.shape[0], size):
        yield doc_emb[start:start + size]


def top_k_faiss(query_emb: np.ndarray, doc_emb: np.ndarray, k: int,
                *, add_chunk: int = DOC_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner product over unit vectors (cosine) with faiss.IndexFlatIP."""
    try:
        import faiss
    except ImportError:
        raise ValueError("ranking faiss needs faiss-cpu (pip install 'embedgate[scale]')") \
            from None
    q = normalize_rows(np.asarray(query_emb, dtype=np.float32))
    index = faiss.IndexFlatIP(q.shape[1])
    for block in blocks(doc_emb, add_chunk):
        index.add(np.ascontiguousarray(normalize_rows(np.asarray(block, dtype=np.float32))))
    scores, idx = index.search(np.ascontiguousarray(q), min(k, index.ntotal))
    return _best_first(idx.astype(np.int64), scores, k)  # the same tie order as the others


def ranker(name: str, *, doc_chunk: int = DOC_CHUNK) -> Callable[..., tuple[np.ndarray,
                                                                            np.ndarray]]:
    """rank(query_emb, doc_emb, k) for one of RANKINGS."""
    if name == "dense":
        return top_k
    if name == "faiss":
        return top_k_faiss
    if name == "chunked":
        return lambda q, d, k: top_k_chunked(q, blocks(d, doc_chunk), k)
    raise ValueError(f"ranking {name!r} is not one of {', '.join(RANKINGS)}")
