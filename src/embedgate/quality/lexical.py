"""BM25 lexical baseline for retrieval sets (bm25s), reported beside the model's score.

A model that cannot beat BM25 on a retrieval set is a finding even when it clears its threshold.
Tokens: lower-cased words, camelCase / snake_case split for code, one token per CJK character
(a common lexical baseline for Chinese and Japanese without a segmenter).
"""

from __future__ import annotations

import re
from typing import Mapping

import bm25s

_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[^\W_]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def tokenize(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(_CAMEL.sub(" ", text))]


def bm25_run(queries: Mapping[str, str], corpus: Mapping[str, str],
             k: int = 100) -> dict[str, dict[str, float]]:
    """Top-k BM25 scores per query, in the run format pytrec_eval reads."""
    doc_ids = list(corpus)
    retriever = bm25s.BM25()
    retriever.index([tokenize(corpus[d]) or ["<empty>"] for d in doc_ids], show_progress=False)
    query_ids = list(queries)
    tokens = [tokenize(queries[q]) or ["<empty>"] for q in query_ids]
    k = min(k, len(doc_ids))
    indices, scores = retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
    return {q: {doc_ids[int(i)]: float(s) for i, s in zip(indices[row], scores[row])}
            for row, q in enumerate(query_ids)}
