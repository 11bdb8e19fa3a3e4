"""Run one quality task: encode through the server, score as MTEB does, bootstrap a CI, compare
with the threshold, and keep per-item scores for item-by-item comparison of two runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from embedgate.bm25_baseline import bm25_run
from embedgate.datasets import PairDataset, RetrievalDataset, unique
from embedgate.metrics import (PAIR_MAIN_SCORE, Interval, bootstrap_ci, cosine_rows, mean_ci,
                               mean_scores, pair_classification_scores,
                               retrieval_scores_per_query, sts_scores, top_k)
from embedgate.model_profiles import ModelProfile
from embedgate.tasks import TaskSpec

Progress = Callable[[str, int, int], None]
RETRIEVAL_DEPTH = 100  # MAP@100 and Recall@100 need the top 100


class CachingEncoder:
    """Encodes each distinct text once per session, longest first, in chunks that report
    progress; the client batches and sends chunks concurrently."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray], *, chunk: int = 2048,
                 progress: Progress | None = None):
        self._embed = embed
        self._cache: dict[str, np.ndarray] = {}
        self.chunk = chunk
        self.progress = progress
        self.seconds = 0.0
        self.texts_encoded = 0

    def encode(self, texts: list[str], label: str = "") -> np.ndarray:
        todo = sorted((t for t in unique(texts) if t not in self._cache), key=len, reverse=True)
        started = time.perf_counter()
        for start in range(0, len(todo), self.chunk):
            part = todo[start:start + self.chunk]
            for text, vector in zip(part, self._embed(part)):
                self._cache[text] = vector
            if self.progress:
                self.progress(label, min(start + self.chunk, len(todo)), len(todo))
        self.seconds += time.perf_counter() - started
        self.texts_encoded += len(todo)
        return np.stack([self._cache[t] for t in texts]) if texts else np.empty((0, 0))


@dataclass
class TaskResult:
    """Everything quality.json keeps about one dataset."""

    name: str
    kind: str
    main_metric: str
    score: float
    metrics: dict[str, float]
    ci: Interval
    n: int
    threshold: float | None
    threshold_source: str
    dataset: dict[str, Any]
    instruction: str | None
    items: dict[str, list]
    encode_s: float
    baseline_bm25: dict[str, float] | None = None
    by_group: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool | None:
        if self.threshold is None:
            return None
        return bool(np.isfinite(self.score) and self.score >= self.threshold)

    def describe(self) -> str:
        ci = f"95% CI {self.ci.low:.4f}-{self.ci.high:.4f}" if np.isfinite(self.ci.low) else \
            "CI n/a"
        return (f"{self.name}: {self.main_metric} {self.score:.4f} ({ci}), n={self.n}, "
                f"dataset {self.dataset['source']} (sha256 {self.dataset['sha256'][:12]})")

    def failure_message(self, profile: str) -> str:
        extra = "".join(f"\n  {k} {v:.4f}" for k, v in self.metrics.items()
                        if k != self.main_metric)
        bm25 = (f"\n  BM25 baseline {self.main_metric} {self.baseline_bm25[self.main_metric]:.4f}"
                if self.baseline_bm25 else "")
        return (f"{self.describe()} is below the threshold {self.threshold} "
                f"({self.threshold_source}, profile {profile!r}){extra}{bm25}")

    def as_json(self) -> dict[str, Any]:
        return {"task": self.kind, "main_metric": self.main_metric, "score": self.score,
                "metrics": self.metrics, "ci": self.ci.as_dict(), "n": self.n,
                "threshold": self.threshold, "threshold_source": self.threshold_source,
                "passed": self.passed, "dataset": self.dataset, "instruction": self.instruction,
                "baseline_bm25": self.baseline_bm25, "by_group": self.by_group,
                "encode_s": round(self.encode_s, 3), "notes": self.notes, "items": self.items}


def _threshold(spec: TaskSpec, profile: ModelProfile) -> tuple[float | None, str]:
    if spec.threshold is not None:
        return spec.threshold, "dataset entry"
    if spec.name in profile.thresholds:
        return float(profile.thresholds[spec.name]), f"profile [thresholds] {spec.name}"
    return None, "none"


def _templates(spec: TaskSpec, profile: ModelProfile, instructions: bool):
    """Query/document formatters: instructions on queries only for retrieval, on both sides
    for symmetric tasks (STS, pair classification), as instruction-tuned models are evaluated."""
    if not instructions:
        return (lambda t: t), (lambda t: t), None
    query = (lambda t: profile.format_query(t, task=spec.instruction))
    document = profile.format_document if spec.kind == "retrieval" else query
    template = profile.instructions.get("query") or None
    return query, document, (template.format(task=spec.instruction, text="{text}")
                             if template else None)


def _pair_result(spec, data: PairDataset, encoder, fq, fd, n_resamples, seed):
    left = encoder.encode([fq(t) for t in data.sentence1], spec.name)
    right = encoder.encode([fd(t) for t in data.sentence2], spec.name)
    sims = cosine_rows(left, right)
    gold = np.asarray(data.gold)
    if spec.kind == "sts":
        metrics = sts_scores(sims, gold)
    else:
        gold = gold.astype(int)
        metrics = pair_classification_scores(sims, gold)
    score_fn = PAIR_MAIN_SCORE[spec.kind]
    ci = bootstrap_ci(score_fn, sims, gold, n_resamples=n_resamples, seed=seed)
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(data.item_ids):
        if ":" in item:
            groups.setdefault(item.split(":", 1)[0], []).append(i)
    by_group = {g: {spec.main_metric: score_fn(sims[idx], gold[idx]), "n": len(idx)}
                for g, idx in sorted(groups.items())}
    items = {"ids": list(data.item_ids), "similarity": [float(s) for s in sims],
             "gold": [float(g) for g in gold]}
    return metrics, ci, len(data), items, by_group, None


def _retrieval_result(spec, data: RetrievalDataset, encoder, fq, fd, n_resamples, seed):
    qids = list(data.qrels)
    dids = list(data.corpus)
    q_emb = encoder.encode([fq(data.queries[q]) for q in qids], spec.name)
    d_emb = encoder.encode([fd(data.corpus[d]) for d in dids], spec.name)
    idx, scores = top_k(q_emb, d_emb, RETRIEVAL_DEPTH)
    run = {q: {dids[int(j)]: float(s) for j, s in zip(idx[r], scores[r])}
           for r, q in enumerate(qids)}
    per_query = retrieval_scores_per_query(run, data.qrels)
    metrics = mean_scores(per_query)
    main = [per_query[q][spec.main_metric] for q in qids]
    ci = mean_ci(main, n_resamples=n_resamples, seed=seed)
    by_lang: dict[str, list[float]] = {}
    for q in qids:
        if q in data.query_languages:
            by_lang.setdefault(data.query_languages[q], []).append(per_query[q][spec.main_metric])
    by_group = {lang: {spec.main_metric: float(np.mean(v)), "n": len(v)}
                for lang, v in sorted(by_lang.items())}
    bm25 = mean_scores(retrieval_scores_per_query(
        bm25_run({q: data.queries[q] for q in qids}, data.corpus, RETRIEVAL_DEPTH), data.qrels))
    items = {"ids": qids, **{m: [per_query[q][m] for q in qids] for m in metrics},
             "top10": [[dids[int(j)] for j in idx[r][:10]] for r in range(len(qids))]}
    return metrics, ci, len(qids), items, by_group, bm25


def evaluate_task(spec: TaskSpec, encoder: CachingEncoder, profile: ModelProfile, *,
                  instructions: bool = True, n_resamples: int = 1000,
                  seed: int = 0) -> TaskResult:
    data = spec.load()
    fq, fd, template = _templates(spec, profile, instructions)
    spent = encoder.seconds
    build = _retrieval_result if spec.kind == "retrieval" else _pair_result
    metrics, ci, n, items, by_group, bm25 = build(spec, data, encoder, fq, fd, n_resamples, seed)
    threshold, source = _threshold(spec, profile)
    dataset = {"source": data.source, "sha256": data.sha256, "builtin": spec.builtin,
               "description": spec.description}
    if spec.kind == "retrieval":
        dataset.update(queries=len(data.qrels), corpus=len(data.corpus))
    return TaskResult(name=spec.name, kind=spec.kind, main_metric=spec.main_metric,
                      score=float(metrics[spec.main_metric]), metrics=metrics, ci=ci, n=n,
                      threshold=threshold, threshold_source=source, dataset=dataset,
                      instruction=template, items=items, encode_s=encoder.seconds - spent,
                      baseline_bm25=bm25, by_group=by_group, notes=list(data.notes))
