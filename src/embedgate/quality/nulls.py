"""The score a random encoder gets on a dataset: the null distribution a bar must clear.

A random encoder's similarities carry no information about the gold labels, so its main score is
the score of random similarities (pair tasks) or random rankings (retrieval). All three main
scores depend on the similarities only through their ranks, so the permutation null of the gold
labels against any model's scores equals the distribution over random scores: it is computed from
the gold labels (and, for retrieval, the qrels and the corpus size) alone, with a fixed seed, and
needs no server. A bar at or below the null's 99th percentile is one a random encoder passes at
least 1% of the time; `embedgate.quality.scoring` refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy import stats

from embedgate.quality.metrics import PAIR_EXTRA_COLUMNS

NULL_QUANTILE = 0.99
DEFAULT_DRAWS = 10_000
MAX_CELLS = 20_000_000  # draws x items per pair null: large user sets get fewer draws
MIN_DRAWS = 1_000


@dataclass(frozen=True)
class Null:
    """A random encoder's score on one dataset: its 99th percentile, mean and how it was drawn."""

    metric: str
    p99: float
    mean: float
    n: int
    draws: int
    seed: int
    method: str

    def describe(self) -> str:
        return (f"random-encoder null p99 {self.p99:.4f} (mean {self.mean:.4f}; {self.method}, "
                f"n={self.n}, {self.draws} draws, seed {self.seed})")

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "p99": self.p99, "mean": self.mean, "n": self.n,
                "draws": self.draws, "seed": self.seed, "method": self.method,
                "quantile": NULL_QUANTILE}


def _summary(metric: str, values: np.ndarray, n: int, seed: int, method: str) -> Null:
    return Null(metric, float(np.quantile(values, NULL_QUANTILE)), float(np.mean(values)), n,
                int(values.size), seed, method)


def _draws(n: int, draws: int) -> int:
    return int(max(MIN_DRAWS, min(draws, MAX_CELLS // max(n, 1))))


def spearman_null(gold, *, draws: int = DEFAULT_DRAWS, seed: int = 0) -> Null:
    """Spearman of random (tie-free) scores against gold: Pearson of a random permutation of
    1..n against the gold's average ranks, as scipy's spearmanr computes it."""
    gold_ranks = stats.rankdata(np.asarray(gold, dtype=np.float64))
    n = gold_ranks.size
    draws = _draws(n, draws)
    rng = np.random.default_rng(seed)
    perms = rng.permuted(np.tile(np.arange(1, n + 1, dtype=np.float64), (draws, 1)), axis=1)
    g = (gold_ranks - gold_ranks.mean()) / np.linalg.norm(gold_ranks - gold_ranks.mean())
    p = perms - perms.mean(axis=1, keepdims=True)
    values = (p @ g) / np.linalg.norm(p, axis=1)
    return _summary("spearman", values, n, seed, "Spearman of random scores vs the gold labels "
                                                 "(permutation null)")


def average_precision_null(labels, *, rankings: int = 1, draws: int = DEFAULT_DRAWS,
                           seed: int = 0) -> Null:
    """AP of a random ranking of the labelled pairs (what a random scorer's AP is); with
    `rankings` > 1, the best AP of that many independent random rankings, the null of a main
    score that takes the best of several similarity columns (MTEB's max_ap), which a random
    encoder's columns could only reach if they were independent: an upper bound."""
    labels = np.asarray(labels, dtype=int)
    n, positives = labels.size, int(labels.sum())
    draws = _draws(n, draws)
    rng = np.random.default_rng(seed)
    best = np.full(draws, -np.inf)
    for _ in range(rankings):
        ranked = rng.permuted(np.tile(labels, (draws, 1)), axis=1)
        precision = np.cumsum(ranked, axis=1) / np.arange(1, n + 1)
        best = np.maximum(best, (precision * ranked).sum(axis=1) / positives)
    what = "random rankings" if rankings == 1 else f"the best of {rankings} random rankings"
    return _summary("ap" if rankings == 1 else "max_ap", best, n, seed,
                    f"AP of {what} of {positives} positives among {n} pairs")


def _distinct_positions(rng: np.random.Generator, corpus: int, k: int, draws: int) -> np.ndarray:
    """Positions of k given documents in a uniformly random ranking of the corpus (draws x k):
    a uniform k-subset of 0..corpus-1 in random order, drawn without shuffling the corpus."""
    out = np.empty((draws, k), dtype=np.int64)
    for j in range(k):
        pos = rng.integers(0, corpus - j, draws)
        taken = np.sort(out[:, :j], axis=1)
        for col in range(j):  # skip over positions already taken, smallest first
            pos += pos >= taken[:, col]
        out[:, j] = pos
    return out


def ndcg_at_10_null(qrels: Mapping[str, Mapping[str, int]], corpus_size: int, *,
                    draws: int = DEFAULT_DRAWS, seed: int = 0) -> Null:
    """Mean nDCG@10 over the queries when every query's ranking of the corpus is random
    (trec_eval's nDCG: linear gains, log2(rank + 1) discounts)."""
    rng = np.random.default_rng(seed)
    discounts = 1.0 / np.log2(np.arange(2, 12))
    total = np.zeros(draws)
    for docs in qrels.values():
        gains = np.array(sorted((g for g in docs.values() if g > 0), reverse=True), float)
        if not gains.size:
            continue
        ideal = float((gains[:10] * discounts[:min(10, gains.size)]).sum())
        pos = _distinct_positions(rng, corpus_size, gains.size, draws)
        hit = pos < 10
        dcg = (np.where(hit, discounts[np.minimum(pos, 9)], 0.0) * gains).sum(axis=1)
        total += dcg / ideal
    values = total / len(qrels)
    return _summary("ndcg_at_10", values, len(qrels), seed,
                    f"mean nDCG@10 of random rankings of {corpus_size} documents")


def pair_null(kind: str, gold, **kwargs) -> Null:
    if kind == "sts":
        return spearman_null(gold, **kwargs)
    if kind == "pair_classification":
        # MTEB's max_ap takes the best of cosine, dot, euclidean and manhattan
        return average_precision_null(gold, rankings=1 + len(PAIR_EXTRA_COLUMNS[kind]), **kwargs)
    raise ValueError(f"no pair null for task kind {kind!r}")


def dataset_null(kind: str, data: Any, **kwargs) -> Null:
    """The null of a loaded dataset (a PairDataset or a RetrievalDataset)."""
    if kind == "retrieval":
        return ndcg_at_10_null(data.qrels, len(data.corpus), **kwargs)
    return pair_null(kind, data.gold, **kwargs)
