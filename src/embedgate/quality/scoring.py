"""Run one quality task: encode through the server, score as MTEB does, bootstrap a CI, judge it
against the profile's bar and the random-encoder null, and keep per-item scores for item-by-item
comparison of two runs.

A verdict is one of: ``pass`` (score at or above the bar, and the CI's lower bound above the
null's 99th percentile), ``fail`` (below the bar, or not distinguishable from a random encoder at
this n), ``profile_error`` (the bar is at or below the null's 99th percentile: a random encoder
could pass it), ``not_applicable`` (the profile's ``[not_applicable]`` says why: skipped, never a
bar at chance), ``unjudged`` (neither a bar nor a published anchor: the session fails) and
``recorded`` (unjudged, but the user asked for record-only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from embedgate.quality.lexical import bm25_run
from embedgate.quality.datasets import PairDataset, RetrievalDataset, unique
from embedgate.quality.metrics import (PAIR_EXTRA_COLUMNS, PAIR_MAIN_SCORE, Interval, bootstrap_ci,
                                       mean_ci, mean_scores, pair_classification_scores,
                                       pair_score_columns, retrieval_scores_per_query, sts_scores)
from embedgate.models.profiles import ModelProfile
from embedgate.quality.nulls import Null, dataset_null
from embedgate.quality.ranking import ranker
from embedgate.quality.tasks import TaskSpec

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


# Statuses whose test is skipped, saying why, rather than passed or failed.
SKIPPED_STATUSES = ("not_applicable", "recorded", "anchored")
FAILED_STATUSES = ("fail", "profile_error", "unjudged")


@dataclass
class TaskResult:
    """Everything quality.json keeps about one dataset, and its verdict."""

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
    details: dict[str, Any] = field(default_factory=dict)  # benchmark, published, truncation
    null: Null | None = None
    status: str = "unjudged"
    reason: str = ""

    @property
    def passed(self) -> bool | None:
        """True for a pass, False for any failing verdict, None when the test is skipped."""
        if self.status in SKIPPED_STATUSES:
            return None
        return self.status == "pass"

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
        null = f"\n  {self.null.describe()}" if self.null else ""
        return f"{self.describe()} {self.reason} (profile {profile!r}){null}{extra}{bm25}"

    def as_json(self) -> dict[str, Any]:
        return {"task": self.kind, "main_metric": self.main_metric, "score": self.score,
                "metrics": self.metrics, "ci": self.ci.as_dict(), "n": self.n,
                "threshold": self.threshold, "threshold_source": self.threshold_source,
                "null": self.null.as_dict() if self.null else None, "status": self.status,
                "reason": self.reason,
                "passed": self.passed, "dataset": self.dataset, "instruction": self.instruction,
                "baseline_bm25": self.baseline_bm25, "by_group": self.by_group,
                "encode_s": round(self.encode_s, 3), "notes": self.notes, **self.details,
                "items": self.items}


@dataclass
class ErroredTask:
    """A dataset whose evaluation raised: quality.json lists it, so `compare` fails on it."""

    name: str
    kind: str
    main_metric: str
    error: str
    status: str = "error"
    passed: bool | None = False

    def as_json(self) -> dict[str, Any]:
        return {"task": self.kind, "main_metric": self.main_metric, "score": None,
                "status": "error", "error": self.error, "passed": False, "items": None}


def _threshold(spec: TaskSpec, profile: ModelProfile) -> tuple[float | None, str]:
    if spec.threshold is not None:
        return spec.threshold, getattr(spec, "threshold_source", "dataset entry")
    if spec.name in profile.thresholds:
        return float(profile.thresholds[spec.name]), f"profile [thresholds] {spec.name}"
    return None, "none"


def _has_anchor(spec: TaskSpec, profile: ModelProfile) -> bool:
    """A published anchor (the profile's [published] table) judges a dataset without a bar."""
    from embedgate.quality.anchors import profile_anchors
    return spec.name in profile_anchors(profile)


def judge(score: float, ci: Interval, null: Null | None, threshold: float | None,
          source: str, *, not_applicable: str | None = None, anchored: bool = False,
          record_only: bool = False) -> tuple[str, str]:
    """The verdict and its reason: the bar must be above what a random encoder reaches, and the
    score must clear both the bar and, with its CI's lower bound, the null's 99th percentile."""
    where = f"{threshold:g} ({source})" if threshold is not None else ""
    if not_applicable is not None and source != "dataset entry":
        clears = (null is not None and np.isfinite(ci.low) and ci.low > null.p99)
        hint = (f"; its CI's lower bound {ci.low:.4f} clears the null p99 {null.p99:.4f}, so a "
                f"bar could be set" if clears else "")
        return "not_applicable", f"not applicable: {not_applicable}{hint}"
    if threshold is None:
        if anchored:
            return "anchored", "no bar; judged by its published anchor"
        if record_only:
            return "recorded", "no bar and no published anchor; recorded only (record-only run)"
        return "unjudged", ("is unjudged: no bar and no published anchor; set one in the "
                            "profile's [thresholds] (above the null), mark it [not_applicable], "
                            "or run with --embedgate-record-only")
    if null is not None and threshold <= null.p99:
        if anchored and not source.startswith("profile [thresholds]"):
            # the bar is the published score minus its tolerance: at chance, it can claim nothing
            return "anchored", (f"its bar {where} is at or below the random-encoder null's 99th "
                                f"percentile {null.p99:.4f} (the published score itself is "
                                f"within a random encoder's reach), so no bar is claimed; "
                                f"judged by its published anchor alone")
        return "profile_error", (f"profile error: the bar {where} is at or below the "
                                 f"random-encoder null's 99th percentile {null.p99:.4f}: a random "
                                 f"encoder could pass it; raise the bar above the null or mark "
                                 f"the dataset [not_applicable]")
    if not (np.isfinite(score) and score >= threshold):
        return "fail", f"is below the threshold {where}"
    if null is not None and not (np.isfinite(ci.low) and ci.low > null.p99):
        if anchored:  # e.g. a model's published score on a language it was not trained for
            return "anchored", (f"reaches the threshold {where}, but its CI's lower bound "
                                f"{ci.low:.4f} is not above the random-encoder null's 99th "
                                f"percentile {null.p99:.4f}, so no bar is claimed at this n; "
                                f"judged by its published anchor alone")
        return "fail", (f"reaches the threshold {where}, but its CI's lower bound {ci.low:.4f} "
                        f"is not above the random-encoder null's 99th percentile "
                        f"{null.p99:.4f}: not distinguishable from a random encoder at n")
    return "pass", f"meets the threshold {where} and clears the random-encoder null"


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


def _pair_result(spec, data: PairDataset, encoder, fq, fd, n_resamples, seed, ranking):
    left = encoder.encode([fq(t) for t in data.sentence1], spec.name)
    right = encoder.encode([fd(t) for t in data.sentence2], spec.name)
    columns = pair_score_columns(left, right)
    sims = columns["cosine"]
    extra = [columns[c] for c in PAIR_EXTRA_COLUMNS[spec.kind]]
    gold = np.asarray(data.gold)
    if spec.kind == "sts":
        metrics = sts_scores(sims, gold)
    else:
        gold = gold.astype(int)
        metrics = pair_classification_scores(sims, gold, **{c: columns[c] for c in
                                                             PAIR_EXTRA_COLUMNS[spec.kind]})
    score_fn = PAIR_MAIN_SCORE[spec.kind]
    ci = bootstrap_ci(score_fn, sims, gold, *extra, n_resamples=n_resamples, seed=seed)
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(data.item_ids):
        if ":" in item:
            groups.setdefault(item.split(":", 1)[0], []).append(i)
    by_group = {g: {spec.main_metric: score_fn(sims[idx], gold[idx], *(e[idx] for e in extra)),
                    "n": len(idx)} for g, idx in sorted(groups.items())}
    items = {"ids": list(data.item_ids), "similarity": [float(s) for s in sims],
             "gold": [float(g) for g in gold],
             **{c: [float(v) for v in columns[c]] for c in PAIR_EXTRA_COLUMNS[spec.kind]}}
    return metrics, ci, len(data), items, by_group, None


def _retrieval_result(spec, data: RetrievalDataset, encoder, fq, fd, n_resamples, seed,
                      ranking):
    qids = list(data.qrels)
    dids = list(data.corpus)
    q_emb = encoder.encode([fq(data.queries[q]) for q in qids], spec.name)
    d_emb = encoder.encode([fd(data.corpus[d]) for d in dids], spec.name)
    skip_self = data.ignore_identical_ids  # MTEB drops a result whose id is the query's
    idx, scores = ranker(ranking)(q_emb, d_emb, RETRIEVAL_DEPTH + int(skip_self))
    run = {q: {dids[int(j)]: float(s) for j, s in zip(idx[r], scores[r])
               if not (skip_self and dids[int(j)] == q)} for r, q in enumerate(qids)}
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
             "top10": [list(run[q])[:10] for q in qids],
             "n_relevant": [sum(1 for r in data.qrels[q].values() if r > 0) for q in qids]}
    return metrics, ci, len(qids), items, by_group, bm25


def evaluate_task(spec: TaskSpec, encoder: CachingEncoder, profile: ModelProfile, *,
                  instructions: bool = True, n_resamples: int = 1000,
                  seed: int = 0, record_only: bool = False,
                  ranking: str = "dense") -> TaskResult:
    """ranking: how retrieval ranks the corpus (embedgate.quality.ranking; all exact)."""
    data = spec.load()
    fq, fd, template = _templates(spec, profile, instructions)
    spent = encoder.seconds
    build = _retrieval_result if spec.kind == "retrieval" else _pair_result
    metrics, ci, n, items, by_group, bm25 = build(spec, data, encoder, fq, fd, n_resamples, seed,
                                                  ranking)
    threshold, source = _threshold(spec, profile)
    null = dataset_null(spec.kind, data, seed=seed)
    score = float(metrics[spec.main_metric])
    status, reason = judge(score, ci, null, threshold, source,
                           not_applicable=profile.not_applicable.get(spec.name),
                           anchored=_has_anchor(spec, profile), record_only=record_only)
    dataset = {"source": data.source, "sha256": data.sha256, "builtin": spec.builtin,
               "description": spec.description}
    if spec.kind == "retrieval":
        dataset.update(queries=len(data.qrels), corpus=len(data.corpus))
    return TaskResult(name=spec.name, kind=spec.kind, main_metric=spec.main_metric,
                      score=score, metrics=metrics, ci=ci, n=n,
                      threshold=threshold, threshold_source=source, dataset=dataset,
                      instruction=template, items=items, encode_s=encoder.seconds - spent,
                      baseline_bm25=bm25, by_group=by_group, notes=list(data.notes),
                      null=null, status=status, reason=reason)
