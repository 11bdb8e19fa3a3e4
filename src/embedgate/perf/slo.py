"""Service-level objectives on open-loop points: the rules, goodput, and a verdict that knows
when the data cannot decide.

Rules read ``METRIC OP VALUE`` with OP one of ``<= < >= >``:

- ``p50_ms`` ... ``p99_ms`` (any ``pNN_ms``): that percentile of latency from the scheduled send
  time, over answered requests;
- ``latency_ms``: a bound on every request; it decides which requests are *good* (goodput);
- ``error_rate``: failed + dropped over scheduled requests (0.01 = 1%);
- ``goodput_pct``: good over scheduled requests, in percent.

A request is good when it was answered and met every per-request bound; with no ``latency_ms``
rule, the percentile rules' bounds are used as per-request bounds (a request over the P95 target
is not a good one). Goodput is the achieved rate times the good share of answered requests.

Besides the rules, a point must keep up: its achieved rate (answers per second, counted over the
middle 90% of the answers) at least ``KEEP_UP`` (98%) of the rate its schedule actually offered
(counted the same way).

Each check comes with a 95% interval: order statistics for percentiles (`stats.quantile_ci`),
Clopper-Pearson for shares, and for the keep-up ratio the spread that latency jitter puts on the
first and last answers. A check whose interval straddles its bound is *uncertain*: the sweep
measures the point again rather than trust one noisy sample.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from embedgate.perf.openloop import OpenLoopResult, event_rate, offered_rate
from embedgate.perf.stats import quantile_ci

KEEP_UP = 0.98
DEFAULT_SLO = ("p95_ms<=100", "error_rate<=0")
CONFIDENCE = 0.95
_Z = 1.959964
_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
_RULE = re.compile(r"^\s*(?P<metric>p\d{1,2}(?:\.\d+)?_ms|latency_ms|error_rate|goodput_pct)\s*"
                   r"(?P<op><=|>=|<|>)\s*(?P<value>\d+(?:\.\d+)?)\s*$")


class SloError(ValueError):
    """An SLO rule that cannot be parsed; the message shows the grammar."""


@dataclass(frozen=True)
class SloRule:
    metric: str
    op: str
    bound: float
    text: str

    @property
    def per_request(self) -> bool:
        return self.metric == "latency_ms"

    @property
    def quantile(self) -> float | None:
        if self.metric.startswith("p") and self.metric.endswith("_ms"):
            return float(self.metric[1:-3]) / 100.0
        return None

    def holds(self, value: float) -> bool:
        return bool(_OPS[self.op](value, self.bound))


_GRAMMAR = ("expected METRIC<=VALUE (or <, >=, >) with METRIC one of pNN_ms (p95_ms), "
            "latency_ms, error_rate, goodput_pct; e.g. p95_ms<=50, latency_ms<=200, "
            "error_rate<=0.01")


def parse_slo(text: str) -> SloRule:
    try:
        metric, op, value = _RULE.match(text).group("metric", "op", "value")
    except AttributeError:  # no match
        raise SloError(f"SLO rule {text!r}: {_GRAMMAR}") from None
    rule = SloRule(metric, op, float(value), text.strip())
    if rule.quantile is not None and not 0 < rule.quantile < 1:
        raise SloError(f"SLO rule {text!r}: the percentile must be between 0 and 100")
    if rule.metric == "error_rate" and rule.bound > 1:
        raise SloError(f"SLO rule {text!r}: error_rate is a share (0.01 = 1%), not a percent")
    if rule.per_request and rule.op not in ("<=", "<"):
        raise SloError(f"SLO rule {text!r}: a per-request latency bound is an upper bound")
    return rule


def parse_slos(texts: Iterable[str]) -> tuple[SloRule, ...]:
    rules = tuple(parse_slo(t) for t in texts)
    if not rules:
        raise SloError("an SLO needs at least one rule, e.g. p95_ms<=50")
    return rules


@dataclass(frozen=True)
class Check:
    """One rule (or the keep-up criterion) on one point."""

    name: str
    value: float | None
    low: float | None
    high: float | None
    passed: bool
    certain: bool
    bound: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "value": self.value, "ci": [self.low, self.high],
                "passed": self.passed, "certain": self.certain, "bound": self.bound}


@dataclass
class PointVerdict:
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def uncertain(self) -> bool:
        """Could more data change the verdict? Not when one check fails for certain (the point
        is unsustainable whatever the others say), nor when every check passes for certain."""
        if any(not c.passed and c.certain for c in self.checks):
            return False
        return any(not c.certain for c in self.checks)

    def failing(self) -> list[str]:
        return [f"{c.name} {_fmt(c.value)} (needs {c.bound})" for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {"sustainable": self.passed, "uncertain": self.uncertain,
                "checks": [c.as_dict() for c in self.checks]}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _decide(name: str, rule_holds, value, low, high, bound: str) -> Check:
    """Passed by the point estimate; certain when the whole interval is on one side."""
    if value is None:
        return Check(name, None, low, high, False, True, bound)
    passed = rule_holds(value)
    sides = [rule_holds(v) for v in (low, high) if v is not None]
    certain = len(sides) == 2 and sides[0] == sides[1] == passed
    return Check(name, value, low, high, passed, certain, bound)


def _share_ci(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    if n == 0:
        return 0.0, 1.0
    ci = binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="exact")
    return float(ci.low), float(ci.high)


def keep_up(results: Sequence[OpenLoopResult]) -> tuple[float | None, float | None]:
    """(achieved / offered, its standard error), averaged over repeats of one point.

    Both rates are measured between the 5th and 95th percentile of their events
    (`openloop.event_rate`). The ratio is the smaller of achieved / offered and answered /
    scheduled, so requests that failed or were dropped count against it wherever they fall (a
    server that fails the second half of a run answers the first half at full rate). Latency
    jitter moves the answers' span by about sqrt(2) x sd(latency), hence the error."""
    ratios, variances = [], []
    for r in results:
        offered = offered_rate(r)
        answered = int(r.ok.sum())
        achieved = event_rate(r.done_s[r.ok]) if answered >= 2 else None
        if offered is None or achieved is None:
            ratios.append(0.0)
            variances.append(0.0)
            continue
        ratio = min(achieved / offered, answered / r.n)
        span = float(r.scheduled_s[-1] - r.scheduled_s[0])
        jitter = float(np.std(r.latency_s)) if r.latency_s.size > 1 else 0.0
        ratios.append(ratio)
        variances.append((math.sqrt(2) * jitter / span * ratio) ** 2)
    if not ratios:
        return None, None
    return float(np.mean(ratios)), math.sqrt(sum(variances)) / len(variances)


def evaluate(results: Sequence[OpenLoopResult], rules: Sequence[SloRule], *,
             keep_up_ratio: float = KEEP_UP) -> PointVerdict:
    """The verdict on one offered rate from one or more runs of it (repeats pool their
    requests); the figures it is based on are in ``verdict.figures``."""
    if not results:
        raise ValueError("evaluate needs at least one run of the point")
    scheduled = sum(r.n for r in results)
    answered = int(sum(int(r.ok.sum()) for r in results))
    latency_ms = np.concatenate([r.latency_s for r in results]) * 1e3
    bounds = [r.bound for r in rules if r.per_request] or [
        r.bound for r in rules if r.quantile is not None and r.op in ("<=", "<")]
    good = int(np.sum(latency_ms <= min(bounds))) if bounds else answered
    ratio, ratio_se = keep_up(results)
    figures: dict[str, Any] = {
        "requests_scheduled": scheduled, "requests_answered": answered,
        "error_rate": (scheduled - answered) / scheduled if scheduled else None,
        "good_requests": good, "good_latency_bound_ms": min(bounds) if bounds else None,
        "keep_up_ratio": ratio, "keep_up_ratio_se": ratio_se, "repeats": len(results)}
    verdict = PointVerdict(figures=figures)
    low = high = None
    if ratio is not None:
        low, high = ratio - _Z * ratio_se, ratio + _Z * ratio_se
    verdict.checks.append(_decide("keep_up_ratio", lambda v: v >= keep_up_ratio, ratio, low,
                                  high, f">= {keep_up_ratio:g}"))
    for rule in rules:
        if rule.per_request:
            continue
        if rule.quantile is not None:
            value = float(np.percentile(latency_ms, rule.quantile * 100)) if latency_ms.size \
                else None
            low, high, _ = quantile_ci(latency_ms, rule.quantile, CONFIDENCE)
        elif rule.metric == "error_rate":
            bad = scheduled - answered
            value = bad / scheduled if scheduled else None
            low, high = _share_ci(bad, scheduled)
            if rule.bound == 0:  # "no errors at all": decided by the count, nothing to estimate
                low = high = value
        else:  # goodput_pct
            value = 100.0 * good / scheduled if scheduled else None
            low, high = (100.0 * v for v in _share_ci(good, scheduled))
        figures[rule.metric] = value
        verdict.checks.append(_decide(rule.metric, rule.holds, value, low, high,
                                      f"{rule.op} {rule.bound:g}"))
    return verdict


def goodput_rps(achieved_rps: float | None, figures: dict[str, Any]) -> float | None:
    """Good answers per second: the achieved rate times the good share of answers."""
    answered = figures.get("requests_answered") or 0
    if achieved_rps is None or not answered:
        return None
    return achieved_rps * figures["good_requests"] / answered
