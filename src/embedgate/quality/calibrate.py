"""`embedgate calibrate`: bars for a model's profile from one measured run (quality.json).

Each bar is the measured score minus a margin, rounded down to 0.01, and it must beat a
random-encoder null: a bar that a model answering at random could reach says nothing. The null
here is the simple one, computed from the run's own per-item values: for pair tasks the main
score of the same similarities against shuffled gold labels (what an encoder unrelated to the
texts gets), for retrieval the nDCG@10 of random rankings of each query's relevant documents in
the corpus. Its 99th percentile over 1000 draws (seed 0) is the floor: a bar below it is raised
to it, and a dataset whose score does not beat it gets no bar, only a comment saying so.
The new profile is the old one with its [thresholds] table replaced; every other table is kept.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from embedgate.quality.metrics import PAIR_EXTRA_COLUMNS, PAIR_MAIN_SCORE

NULL_QUANTILE = 0.99
NULL_DRAWS = 1000
DEFAULT_MARGIN = 0.05


@dataclass(frozen=True)
class Bar:
    name: str
    metric: str
    score: float
    ci: tuple[float | None, float | None]
    n: int
    null: float | None
    bar: float | None
    why: str


def _null_pairs(entry: Mapping[str, Any], rng: np.random.Generator, draws: int) -> float:
    items = entry["items"]
    score = PAIR_MAIN_SCORE[entry["task"]]
    sims = np.asarray([np.nan if v is None else v for v in items["similarity"]], float)
    extra = [np.asarray(items[c], float) for c in PAIR_EXTRA_COLUMNS[entry["task"]] if c in items]
    gold = np.asarray(items["gold"], float)
    if entry["task"] == "pair_classification":
        gold = gold.astype(int)
    values = [score(sims, rng.permutation(gold), *extra) for _ in range(draws)]
    return float(np.quantile(values, NULL_QUANTILE))


def _null_retrieval(entry: Mapping[str, Any], rng: np.random.Generator, draws: int) -> float | None:
    """nDCG@10 (binary gains) when each query's relevant documents fall at random ranks: the
    number in the top 10 is hypergeometric, their places among the 10 uniform."""
    relevant = entry["items"].get("n_relevant")
    corpus = int((entry.get("dataset") or {}).get("corpus") or 0)
    if not relevant or not corpus or entry["main_metric"] != "ndcg_at_10":
        return None
    rel = np.minimum(np.asarray(relevant, int), corpus)
    discounts = 1 / np.log2(np.arange(2, 12))
    ideal = np.cumsum(discounts)[np.clip(rel, 1, 10) - 1]
    means = []
    for _ in range(draws):
        hits = rng.hypergeometric(rel, corpus - rel, min(10, corpus))
        slots = np.argsort(rng.random((len(rel), 10)), axis=1)
        gains = discounts[slots] * (np.arange(10)[None, :] < hits[:, None])
        means.append(float(np.mean(gains.sum(axis=1) / ideal)))
    return float(np.quantile(means, NULL_QUANTILE))


def null_floor(entry: Mapping[str, Any], *, draws: int = NULL_DRAWS, seed: int = 0) -> float | None:
    """The 99th percentile of the dataset's main score under a random encoder; None when the
    run kept too little to compute it. (The kit's one simple null; see the module docstring.)"""
    rng = np.random.default_rng(seed)
    if entry["task"] == "retrieval":
        return _null_retrieval(entry, rng, draws)
    return _null_pairs(entry, rng, draws)


def calibrate(document: Mapping[str, Any], *, margin: float = DEFAULT_MARGIN,
              draws: int = NULL_DRAWS) -> list[Bar]:
    bars = []
    for name, entry in document.get("datasets", {}).items():
        score = entry.get("score")
        ci = entry.get("ci") or {}
        base = dict(name=name, metric=entry["main_metric"], ci=(ci.get("low"), ci.get("high")),
                    n=entry.get("n", 0))
        if score is None or not math.isfinite(score):
            bars.append(Bar(**base, score=float("nan"), null=None, bar=None,
                            why="no finite score in the run"))
            continue
        null = null_floor(entry, draws=draws)
        bar = math.floor((score - margin) * 100 + 1e-9) / 100
        why = f"score - margin {margin:g}, rounded down"
        if null is None:
            why += "; no random-encoder null (the run lacks per-item values for it)"
        elif score <= null:
            bar, why = None, (f"the score does not beat a random encoder (null "
                              f"{NULL_QUANTILE:.0%} {null:.4f}): no bar")
        elif bar <= null:
            bar, why = math.ceil(null * 100) / 100, (f"raised to the random-encoder null's "
                                                     f"{NULL_QUANTILE:.0%} quantile {null:.4f}")
            if bar > score:
                bar, why = None, (f"the score beats the null ({null:.4f}) by less than 0.01: "
                                  f"no bar")
        bars.append(Bar(**base, score=float(score), null=null, bar=bar, why=why))
    return bars


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'"{name}"'


def thresholds_table(bars: list[Bar], document: Mapping[str, Any], source: str,
                     margin: float) -> str:
    lines = ["[thresholds]",
             f"# Calibrated by `embedgate calibrate` from {source} (run {document.get('created')},"
             f" {document.get('backend')} {document.get('server_version') or ''}, model "
             f"{document.get('model')} served as {document.get('served_name')!r}).",
             f"# Each bar: the measured score minus {margin:g}, rounded down to 0.01, and above "
             f"the {NULL_QUANTILE:.0%} quantile of a random-encoder null ({NULL_DRAWS} draws)."]
    for b in bars:
        ci = (f"CI {b.ci[0]:.3f}-{b.ci[1]:.3f}, " if None not in b.ci else "")
        null = f", null {b.null:.4f}" if b.null is not None else ""
        facts = f"{b.metric} {b.score:.4f}, {ci}n={b.n}{null}"
        if b.bar is None:
            lines.append(f"# {_key(b.name)}: {facts}; {b.why}")
        else:
            lines.append(f"{_key(b.name)} = {b.bar:.2f}   # {facts}; {b.why}")
    return "\n".join(lines) + "\n"


def replace_thresholds(profile_text: str, table: str) -> str:
    """The profile with its [thresholds] table (header to the next table) replaced by `table`."""
    lines = profile_text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == "[thresholds]"), None)
    if start is None:
        return profile_text.rstrip("\n") + "\n\n" + table
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")),
               len(lines))
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return "".join(lines[:start]) + table + ("\n" + "".join(lines[end:]).lstrip("\n")
                                             if end < len(lines) else "")


def calibrated_profile(document: Mapping[str, Any], profile_path: Path, *, source: str,
                       margin: float = DEFAULT_MARGIN, draws: int = NULL_DRAWS
                       ) -> tuple[str, list[Bar]]:
    bars = calibrate(document, margin=margin, draws=draws)
    text = replace_thresholds(Path(profile_path).read_text(encoding="utf-8"),
                              thresholds_table(bars, document, source, margin))
    return text, bars


__all__ = ["Bar", "calibrate", "calibrated_profile", "null_floor", "replace_thresholds",
           "thresholds_table"]
