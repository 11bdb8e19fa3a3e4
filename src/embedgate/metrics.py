"""Scores as MTEB defines them, on plain arrays (scipy does the statistics)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of a[i] and b[i] for every row i."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.einsum("ij,ij->i", a, b) / np.where(norms == 0, np.nan, norms)


def spearman(scores, gold) -> float:
    """Spearman rank correlation (MTEB's STS main score uses it on cosine vs gold)."""
    scores = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        return float("nan")
    return float(stats.spearmanr(scores, gold).statistic)


def pearson(scores, gold) -> float:
    scores = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        return float("nan")
    return float(stats.pearsonr(scores, gold).statistic)
