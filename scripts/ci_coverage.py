"""Coverage of paired bootstrap CIs (percentile, basic, BCa) at the sizes the kit compares.

`embedgate compare` judges a candidate by the paired bootstrap CI of (candidate - baseline) on
each dataset; this simulation picks the CI method it uses. For each statistic the kit compares
(a Spearman difference on graded gold, an AP difference on 0/1 labels, a mean difference of
per-query nDCG@10) and each size, it draws many datasets from a population whose true delta is
known (from 200,000 items), builds the 95% CI with scipy.stats.bootstrap and counts how often the
CI holds the true delta. Seeded; prints a Markdown table (the README's).

    python scripts/ci_coverage.py                       # the README's table (about 10 min, 2 cores)
    python scripts/ci_coverage.py --reps 100 --sizes 84  # a quick look
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Callable

import numpy as np
from scipy import stats

from embedgate.quality.metrics import average_precision_batch, spearman_batch

METHODS = ("percentile", "basic", "BCa")
SIZES = (24, 84, 103, 180, 336)
POPULATION = 200_000


def _sts(rng: np.random.Generator, n: int):
    gold = np.round(rng.uniform(0, 5, n), 1)
    item = rng.normal(0, 1.0, n)  # what both models get wrong about an item
    base = gold + item + rng.normal(0, 1.2, n)
    cand = gold + item + rng.normal(0, 1.5, n)
    return cand, base, gold


def _ap(rng: np.random.Generator, n: int):
    gold = (rng.random(n) < 0.5).astype(float)
    item = rng.normal(0, 1.0, n)
    base = 0.9 * gold + item + rng.normal(0, 0.8, n)
    cand = 0.7 * gold + item + rng.normal(0, 0.8, n)
    return cand, base, gold


NDCG_LEVELS = np.array([0.0, 0.3869, 0.5, 0.6309, 1.0])


def _ndcg(rng: np.random.Generator, n: int):
    base = rng.choice(NDCG_LEVELS, n, p=[0.25, 0.08, 0.1, 0.12, 0.45])
    redraw = rng.random(n) < 0.35
    other = rng.choice(NDCG_LEVELS, n, p=[0.3, 0.08, 0.1, 0.12, 0.4])
    cand = np.where(redraw, other, base)
    return cand, base


def _pair_delta(score: Callable) -> Callable:
    return lambda cand, base, gold, axis=-1: score(cand, gold) - score(base, gold)


def _mean_delta(cand, base, axis=-1):
    return np.mean(cand - base, axis=axis)


CASES = {
    "spearman delta (STS, graded gold)": (_sts, _pair_delta(spearman_batch)),
    "AP delta (pair classification)": (_ap, _pair_delta(average_precision_batch)),
    "nDCG@10 mean delta (retrieval)": (_ndcg, _mean_delta),
}


def coverage(case: str, n: int, *, reps: int, resamples: int, seed: int) -> dict[str, float]:
    draw, statistic = CASES[case]
    truth = float(statistic(*draw(np.random.default_rng(10_000 + seed), POPULATION)))
    rng = np.random.default_rng(seed)
    hits = {m: 0 for m in METHODS}
    widths = {m: 0.0 for m in METHODS}
    for _ in range(reps):
        data = draw(rng, n)
        first = None
        for method in METHODS:
            with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # BCa is undefined on some small samples
                res = stats.bootstrap(data, statistic, paired=True, vectorized=True, axis=-1,
                                      n_resamples=resamples if first is None else 0,
                                      bootstrap_result=first, method=method,
                                      confidence_level=0.95, random_state=rng)
            first = first or res
            low, high = res.confidence_interval
            hits[method] += bool(low <= truth <= high)  # a NaN interval (degenerate) misses
            widths[method] += float(high - low) if np.isfinite(high - low) else 0.0
    return {**{m: hits[m] / reps for m in METHODS}, **{f"width_{m}": widths[m] / reps
                                                       for m in METHODS}, "truth": truth}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"95% CI coverage, {args.reps} simulated datasets per cell, {args.resamples} resamples, "
          f"seed {args.seed} (nominal 0.95; Monte Carlo SE about "
          f"{np.sqrt(0.95 * 0.05 / args.reps):.3f})\n")
    print("| statistic | n | true delta | " + " | ".join(METHODS) + " | mean width (percentile) |")
    print("|---|---|---|" + "---|" * len(METHODS) + "---|")
    for case in CASES:
        for n in args.sizes:
            c = coverage(case, n, reps=args.reps, resamples=args.resamples, seed=args.seed)
            print(f"| {case} | {n} | {c['truth']:+.4f} | "
                  + " | ".join(f"{c[m]:.3f}" for m in METHODS)
                  + f" | {c['width_percentile']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
