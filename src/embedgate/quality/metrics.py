"""Scores as MTEB defines them, as pure functions of plain arrays.

scipy does the correlations and the bootstrap, scikit-learn the average precision and
pytrec_eval (MTEB's own dependency) the ranking metrics; this module only arranges the inputs
the way MTEB does, so a score here equals the MTEB / sentence-transformers score for the same
embeddings (tests/test_metrics.py shows it to 1e-6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pytrec_eval
from scipy import stats
from sklearn.metrics import average_precision_score

# Main score of each task kind, as in MTEB.
MAIN_METRIC = {"sts": "spearman", "pair_classification": "max_ap", "retrieval": "ndcg_at_10"}
RECALL_AT = (1, 5, 10, 100)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of a[i] and b[i] for every row i (NaN where a vector is zero)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.einsum("ij,ij->i", a, b) / np.where(norms == 0, np.nan, norms)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, np.nan, norms)


def _finite(scores) -> np.ndarray | None:
    scores = np.asarray(scores, dtype=np.float64)
    return scores if np.all(np.isfinite(scores)) else None


def spearman(scores, gold) -> float:
    """Spearman rank correlation (MTEB's STS main score, on cosine vs gold)."""
    scores = _finite(scores)
    return float("nan") if scores is None else float(stats.spearmanr(scores, gold).statistic)


def pearson(scores, gold) -> float:
    scores = _finite(scores)
    return float("nan") if scores is None else float(stats.pearsonr(scores, gold).statistic)


def sts_scores(similarities, gold) -> dict[str, float]:
    return {"spearman": spearman(similarities, gold), "pearson": pearson(similarities, gold)}


def average_precision(scores, labels) -> float:
    """AP of ranking by similarity, 1 = positive (MTEB pair classification's main score)."""
    scores = _finite(scores)
    labels = np.asarray(labels, dtype=int)
    if scores is None or labels.min() == labels.max():
        return float("nan")
    return float(average_precision_score(labels, scores))


def _sorted_by_score(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return np.asarray(scores, dtype=np.float64)[order], np.asarray(labels, dtype=int)[order]


def best_accuracy(scores, labels) -> tuple[float, float]:
    """Best accuracy over thresholds midway between consecutive sorted scores, and that
    threshold (MTEB / sentence-transformers' find_best_acc_and_threshold)."""
    s, y = _sorted_by_score(scores, labels)
    if len(s) < 2:
        return float("nan"), float("nan")
    positives_above = np.cumsum(y)[:-1]
    negatives_below = (y == 0).sum() - np.cumsum(y == 0)[:-1]
    accuracy = (positives_above + negatives_below) / len(y)
    i = int(np.argmax(accuracy))
    return float(accuracy[i]), float((s[i] + s[i + 1]) / 2)


def best_f1(scores, labels) -> dict[str, float]:
    """Best F1 over the same thresholds, with its precision, recall and threshold."""
    s, y = _sorted_by_score(scores, labels)
    if len(s) < 2 or y.sum() == 0:
        return {"f1": float("nan"), "precision": float("nan"), "recall": float("nan"),
                "f1_threshold": float("nan")}
    correct = np.cumsum(y)[:-1].astype(np.float64)
    extracted = np.arange(1, len(y), dtype=np.float64)
    precision = correct / extracted
    recall = correct / y.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(correct > 0, 2 * precision * recall / (precision + recall), 0.0)
    i = int(np.argmax(f1))
    return {"f1": float(f1[i]), "precision": float(precision[i]), "recall": float(recall[i]),
            "f1_threshold": float((s[i] + s[i + 1]) / 2)}


# What MTEB ranks pairs by: two similarities and two distances (a distance ranks ascending).
PAIR_DISTANCES = ("euclidean", "manhattan")


def pair_score_columns(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Cosine and dot similarity and euclidean and manhattan distance of each pair a[i], b[i],
    computed as MTEB's evaluators do (scikit-learn's paired distances, in the embeddings' own
    dtype: float32 from a server), so near-equal pairs rank as they do in MTEB. NaN where a
    vector is zero or not finite."""
    from sklearn.metrics.pairwise import (paired_cosine_distances, paired_euclidean_distances,
                                          paired_manhattan_distances)

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    bad = ~(np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1))
    bad |= (np.abs(a).sum(axis=1) == 0) | (np.abs(b).sum(axis=1) == 0)
    if bad.all():
        nan = np.full(len(a), np.nan)
        return {"cosine": nan, "dot": nan, "euclidean": nan, "manhattan": nan}
    a, b = np.where(bad[:, None], 1, a), np.where(bad[:, None], 1, b)
    columns = {"cosine": 1 - paired_cosine_distances(a, b),
               "dot": np.asarray([np.dot(x, y) for x, y in zip(a, b)]),
               "euclidean": paired_euclidean_distances(a, b),
               "manhattan": paired_manhattan_distances(a, b)}
    out = {}
    for name, col in columns.items():
        col = np.asarray(col, dtype=np.float64)
        col[bad] = np.nan
        out[name] = col
    return out


def max_average_precision(cosine, labels, dot=None, euclidean=None, manhattan=None) -> float:
    """MTEB's pair-classification main score (``max_ap``): the best average precision over the
    cosine and dot similarities and the euclidean and manhattan distances that are given."""
    columns = [(cosine, 1.0), (dot, 1.0), (euclidean, -1.0), (manhattan, -1.0)]
    values = [average_precision(sign * np.asarray(col, dtype=np.float64), labels)
              for col, sign in columns if col is not None]
    return float("nan") if any(np.isnan(v) for v in values) else float(max(values))


def pair_classification_scores(similarities, labels, *, dot=None, euclidean=None,
                               manhattan=None) -> dict[str, float]:
    """MTEB's max_ap (main) and the AP of each score given; best-threshold accuracy and F1 of
    the cosine similarity, as MTEB's PairClassification reports them."""
    scores = _finite(similarities)
    if scores is None:
        return {k: float("nan") for k in ("max_ap", "cosine_ap", "accuracy",
                                          "accuracy_threshold", "f1", "precision", "recall",
                                          "f1_threshold")}
    accuracy, threshold = best_accuracy(scores, labels)
    aps = {"cosine_ap": average_precision(scores, labels)}
    for name, col, sign in (("dot", dot, 1.0), ("euclidean", euclidean, -1.0),
                            ("manhattan", manhattan, -1.0)):
        if col is not None:
            aps[f"{name}_ap"] = average_precision(sign * np.asarray(col, dtype=np.float64), labels)
    return {"max_ap": max_average_precision(scores, labels, dot, euclidean, manhattan), **aps,
            "accuracy": accuracy, "accuracy_threshold": threshold, **best_f1(scores, labels)}


# The main score of a pair task as a function of (cosine, gold, *other score columns), for
# bootstraps and deltas; pair classification's other columns are dot, euclidean, manhattan.
PAIR_MAIN_SCORE = {"sts": spearman, "pair_classification": max_average_precision}
PAIR_EXTRA_COLUMNS = {"sts": (), "pair_classification": ("dot", "euclidean", "manhattan")}


def spearman_batch(scores, gold) -> np.ndarray:
    """`spearman` along the last axis of batched arrays (one value per resample): the Pearson
    correlation of average ranks, as scipy's spearmanr."""
    r_s = stats.rankdata(np.asarray(scores, dtype=np.float64), axis=-1)
    r_g = stats.rankdata(np.asarray(gold, dtype=np.float64), axis=-1)
    r_s = r_s - r_s.mean(axis=-1, keepdims=True)
    r_g = r_g - r_g.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (r_s * r_g).sum(axis=-1) / np.sqrt((r_s ** 2).sum(axis=-1) * (r_g ** 2).sum(axis=-1))


def average_precision_batch(scores, labels) -> np.ndarray:
    """`average_precision` along the last axis: precision at each distinct score (ties form one
    threshold, as scikit-learn's), weighted by the recall gained there."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    scores, labels = np.broadcast_arrays(scores, labels)
    order = np.argsort(-scores, axis=-1, kind="stable")
    s = np.take_along_axis(scores, order, axis=-1)
    y = np.take_along_axis(labels, order, axis=-1)
    tp = np.cumsum(y, axis=-1)
    seen = np.arange(1, s.shape[-1] + 1)
    last_of_tie = np.ones(s.shape, dtype=bool)
    last_of_tie[..., :-1] = s[..., 1:] != s[..., :-1]
    # each tie group ends at a threshold: precision there times the positives the group adds
    prev_tp = np.where(last_of_tie, tp, 0)
    prev_tp = np.concatenate([np.zeros(s.shape[:-1] + (1,)), prev_tp[..., :-1]], axis=-1)
    prev_tp = np.maximum.accumulate(prev_tp, axis=-1)
    gained = np.where(last_of_tie, tp - prev_tp, 0.0)
    positives = tp[..., -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (gained * tp / seen).sum(axis=-1) / positives
    bad = (positives == 0) | (positives == s.shape[-1]) | ~np.isfinite(s).all(axis=-1)
    return np.where(bad, np.nan, ap)


def max_average_precision_batch(cosine, labels, dot=None, euclidean=None,
                                manhattan=None) -> np.ndarray:
    """`max_average_precision` along the last axis (distances rank ascending)."""
    columns = [(cosine, 1.0), (dot, 1.0), (euclidean, -1.0), (manhattan, -1.0)]
    aps = [average_precision_batch(sign * np.asarray(col, dtype=np.float64), labels)
           for col, sign in columns if col is not None]
    return np.max(np.stack(aps), axis=0)  # NaN where any column's AP is NaN, as the scalar


PAIR_MAIN_SCORE_BATCH = {"sts": spearman_batch,
                         "pair_classification": max_average_precision_batch}


def top_k(query_emb: np.ndarray, doc_emb: np.ndarray, k: int,
          chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine scores of the k most similar documents per query, best first."""
    q = normalize_rows(query_emb)
    d = normalize_rows(doc_emb)
    k = min(k, d.shape[0])
    idx_out, score_out = [], []
    for start in range(0, q.shape[0], chunk):
        sims = q[start:start + chunk] @ d.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        idx_out.append(np.take_along_axis(part, order, axis=1))
        score_out.append(np.take_along_axis(part_scores, order, axis=1))
    return np.vstack(idx_out), np.vstack(score_out)


Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def retrieval_scores_per_query(run: Run, qrels: Qrels) -> dict[str, dict[str, float]]:
    """nDCG@10, MRR@10, Recall@1/5/10/100 and MAP@100 per query with trec_eval's definitions
    (pytrec_eval, as MTEB); MRR@10 is the reciprocal rank within the top 10, as MTEB's mrr@10."""
    measures = {"ndcg_cut.10", "map_cut.100", "recall." + ",".join(map(str, RECALL_AT))}
    qrels = {q: {d: int(r) for d, r in docs.items()} for q, docs in qrels.items()}
    run = {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if q in qrels}
    full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    top10 = {q: dict(sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))[:10])
             for q, docs in run.items()}
    mrr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    out: dict[str, dict[str, float]] = {}
    for q in qrels:
        m = full.get(q, {})
        out[q] = {"ndcg_at_10": m.get("ndcg_cut_10", 0.0),
                  "mrr_at_10": mrr.get(q, {}).get("recip_rank", 0.0),
                  **{f"recall_at_{k}": m.get(f"recall_{k}", 0.0) for k in RECALL_AT},
                  "map_at_100": m.get("map_cut_100", 0.0)}
    return out


def mean_scores(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    names = next(iter(per_query.values())).keys()
    return {n: float(np.mean([v[n] for v in per_query.values()])) for n in names}


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    confidence: float
    n_resamples: int
    seed: int

    def as_dict(self) -> dict[str, float | int]:
        return {"low": self.low, "high": self.high, "confidence": self.confidence,
                "n_resamples": self.n_resamples, "seed": self.seed, "method": "percentile"}


def bootstrap_ci(statistic: Callable[..., float], *columns: Sequence,
                 n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> Interval:
    """Percentile bootstrap CI resampling items (rows of all columns together), fixed seed.

    scipy.stats.bootstrap with paired=True keeps each item's columns together, which is what
    "resampling pairs or queries" means; the percentile method scales to 20k-item sets.
    """
    data = tuple(np.asarray(c) for c in columns)
    if len(data[0]) < 2 or not np.isfinite(statistic(*data)):
        return Interval(float("nan"), float("nan"), confidence, n_resamples, seed)
    res = stats.bootstrap(data, statistic, paired=True, vectorized=False,
                          n_resamples=n_resamples, confidence_level=confidence,
                          method="percentile", random_state=np.random.default_rng(seed))
    return Interval(float(res.confidence_interval.low), float(res.confidence_interval.high),
                    confidence, n_resamples, seed)


def mean_ci(values: Sequence[float], **kwargs) -> Interval:
    """Bootstrap CI of a mean of per-item values (retrieval: per-query metric)."""
    return bootstrap_ci(lambda v: float(np.mean(v)), values, **kwargs)
