"""Random-encoder nulls and the bars above them (issue 17, item 1).

A bar must be one no random encoder can pass: above the 99th percentile of what random scores
reach on the same items. The nulls are checked against closed forms, against a brute-force
permutation of the gold labels, and every bar of every shipped profile is checked against its
fixture's null; none of this needs a server.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from embedgate.models.profiles import available_profiles, load_profile
from embedgate.quality.metrics import Interval, average_precision, spearman
from embedgate.quality.nulls import (average_precision_null, dataset_null, ndcg_at_10_null,
                                     spearman_null)
from embedgate.quality.scoring import judge
from embedgate.quality.tasks import builtin_tasks


@pytest.fixture(scope="module")
def fixture_nulls():
    return {t.name: dataset_null(t.kind, t.load()) for t in builtin_tasks()}


def _expected_random_ap(positives: int, n: int) -> float:
    """E[AP] of a uniformly random ranking (Bestgen 2015): (1/n)((R-1)/(n-1)(n - H_n) + H_n)."""
    harmonic = sum(1 / k for k in range(1, n + 1))
    return ((positives - 1) / (n - 1) * (n - harmonic) + harmonic) / n


@pytest.mark.parametrize("positives,n", [(12, 24), (168, 336), (5, 40)])
def test_ap_null_mean_equals_the_closed_form(positives, n):
    labels = np.r_[np.ones(positives), np.zeros(n - positives)]
    null = average_precision_null(labels, seed=3)
    assert null.mean == pytest.approx(_expected_random_ap(positives, n), abs=0.004)
    assert null.p99 > null.mean


def test_ap_null_at_24_pairs_is_far_above_half():
    """Why the per-language XNLI sets were pooled: 12 positives in 24 give a random AP p99 of
    about 0.80, so no bar below that means anything."""
    null = average_precision_null(np.r_[np.ones(12), np.zeros(12)])
    assert 0.55 < null.mean < 0.57 and 0.78 < null.p99 < 0.83


def test_spearman_null_p99_follows_the_normal_approximation():
    null = spearman_null(np.arange(200, dtype=float), seed=1)
    assert null.p99 == pytest.approx(2.326 / math.sqrt(199), abs=0.01)
    assert abs(null.mean) < 0.005


def test_pair_nulls_equal_a_brute_force_permutation_of_the_gold_labels():
    """The permutation null of gold against fixed model scores is the random-score null."""
    rng = np.random.default_rng(5)
    gold = np.round(rng.uniform(0, 5, 60), 1)
    labels = (gold > 2.5).astype(int)
    scores = rng.normal(size=60)
    perm_sp = [spearman(scores, rng.permutation(gold)) for _ in range(3000)]
    perm_ap = [average_precision(scores, rng.permutation(labels)) for _ in range(3000)]
    assert spearman_null(gold).p99 == pytest.approx(np.quantile(perm_sp, 0.99), abs=0.03)
    assert average_precision_null(labels).p99 == pytest.approx(np.quantile(perm_ap, 0.99),
                                                               abs=0.03)


def test_ndcg_null_mean_equals_the_closed_form_for_one_relevant_document():
    corpus = 173
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(100)}
    expected = sum(1 / math.log2(r + 1) for r in range(1, 11)) / corpus
    null = ndcg_at_10_null(qrels, corpus, seed=2)
    assert null.mean == pytest.approx(expected, abs=0.002)
    assert null.n == 100 and null.p99 > expected


def test_ndcg_null_with_several_relevant_documents_stays_a_valid_ndcg():
    qrels = {"a": {"x": 1, "y": 1, "z": 1}, "b": {"x": 2, "w": 1}}
    null = ndcg_at_10_null(qrels, 12, draws=2000)
    assert 0 < null.mean < 1 and null.p99 <= 1.0


@pytest.mark.parametrize("profile", available_profiles())
def test_no_bar_of_any_profile_is_at_or_below_its_fixtures_null(profile, fixture_nulls):
    """Every [thresholds] entry names a shipped fixture and sits above its null's p99; every
    [not_applicable] entry names a shipped fixture too."""
    p = load_profile(profile)
    for name, bar in p.thresholds.items():
        assert name in fixture_nulls, f"{profile}: [thresholds] {name} is no shipped dataset"
        null = fixture_nulls[name]
        assert bar > null.p99, (f"{profile}: bar {name} = {bar} is not above the random-encoder "
                                f"null p99 {null.p99:.4f} ({null.method})")
    for name in p.not_applicable:
        assert name in fixture_nulls, f"{profile}: [not_applicable] {name} is no shipped dataset"


def test_tiny_qwen3_bars_are_the_smallest_no_random_encoder_passes(fixture_nulls):
    """The random model's profile: every fixture has a bar, each the null p99 rounded up."""
    bars = load_profile("tiny-qwen3").thresholds
    assert set(bars) == set(fixture_nulls)
    for name, null in fixture_nulls.items():
        assert null.p99 < bars[name] <= null.p99 + 0.01, (name, bars[name], null.p99)


CI = Interval(0.40, 0.60, 0.95, 1000, 0)


def _null(p99=0.2):
    from embedgate.quality.nulls import Null
    return Null("spearman", p99, 0.0, 180, 10_000, 0, "test")


@pytest.mark.parametrize("kwargs,status,words", [
    (dict(score=0.5, ci=CI, threshold=0.45), "pass", "clears the random-encoder null"),
    (dict(score=0.4, ci=CI, threshold=0.45), "fail", "below the threshold 0.45"),
    (dict(score=0.5, ci=CI, threshold=0.15), "profile_error",
     "at or below the random-encoder null's 99th percentile 0.2000"),
    (dict(score=0.5, ci=Interval(0.1, 0.7, 0.95, 1000, 0), threshold=0.3), "fail",
     "not distinguishable from a random encoder"),
    (dict(score=0.5, ci=CI, threshold=None), "unjudged", "--embedgate-record-only"),
    (dict(score=0.5, ci=CI, threshold=None, record_only=True), "recorded", "recorded only"),
    (dict(score=0.5, ci=CI, threshold=None, anchored=True), "anchored", "published anchor"),
    (dict(score=0.5, ci=Interval(0.1, 0.7, 0.95, 1000, 0), threshold=0.3, anchored=True),
     "anchored", "no bar is claimed at this n; judged by its published anchor alone"),
    (dict(score=0.2, ci=Interval(0.1, 0.7, 0.95, 1000, 0), threshold=0.3, anchored=True),
     "fail", "below the threshold 0.3"),
    (dict(score=0.5, ci=CI, threshold=0.15, anchored=True, source="published 0.16 - 0.01"),
     "anchored", "at or below the random-encoder null's 99th percentile 0.2000 (the published"),
    (dict(score=0.5, ci=CI, threshold=0.15, anchored=True, source="profile [thresholds] x"),
     "profile_error", "at or below the random-encoder null's 99th percentile 0.2000"),
    (dict(score=0.1, ci=CI, threshold=None, not_applicable="English-only model"),
     "not_applicable", "not applicable: English-only model; its CI's lower bound 0.4000 clears"),
])
def test_judge_gives_each_verdict_with_its_reason(kwargs, status, words):
    kwargs.setdefault("source", "profile [thresholds] x")
    got, reason = judge(null=_null(), **kwargs)
    assert got == status and words in reason
