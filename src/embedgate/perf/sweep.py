"""Rate sweeps and the highest sustainable rate: which offered rates a server holds under an SLO.

A point is one offered rate, measured by an injected ``measure(rate, attempt)`` (an open-loop run)
and judged by `slo.evaluate`. When the verdict is uncertain (an interval straddles its bound), the
point is measured again, up to ``max_repeats`` more times, and judged on the pooled runs.

The sweep walks its rates upwards and stops after ``stop_after`` unsustainable points in a row
(past saturation each point only adds backlog). Its bracket is the highest sustainable rate below
the lowest unsustainable one. When not even the lowest rate is sustainable,
the max sustainable rate is 0 and nothing is searched. Otherwise a search bisects the bracket for
``steps`` points or until it
is narrower than ``resolution`` of its top; the search is repeated ``searches`` times with fresh
attempts (new arrival draws and texts), so the max sustainable rate comes with its repeat spread.
Every measurement is bounded: the sweep by ``max_points`` runs, each search by ``steps`` points of
at most ``1 + max_repeats`` runs, so the searches always run (the gate needs their repeats).

Attempts (which seed the arrivals and pick the texts) are numbered by sweep position and repeat,
so the sweep sends the same requests at the same offsets in every run with the same options; the
search's midpoints depend on the verdicts before them, and are numbered as measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from embedgate.perf import openloop
from embedgate.perf.openloop import OpenLoopResult
from embedgate.perf.slo import KEEP_UP, PointVerdict, SloRule, evaluate, goodput_rps
from embedgate.perf.stats import median, quantile_ci, spread_pct

Measure = Callable[[float, int], OpenLoopResult]

DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25)
DEFAULT_SEARCHES = 3
DEFAULT_STEPS = 3
DEFAULT_RESOLUTION = 0.05
DEFAULT_MAX_REPEATS = 1
DEFAULT_STOP_AFTER = 2
DEFAULT_MAX_POINTS = 16
SEARCH_ATTEMPTS = 10_000  # search runs are numbered from here; sweep runs by their position


class BudgetExhausted(RuntimeError):
    """The sweep used its ``max_points`` runs; what was measured so far is kept."""


@dataclass
class Point:
    rate_rps: float
    stage: str
    runs: list[OpenLoopResult]
    verdict: PointVerdict

    @property
    def sustainable(self) -> bool:
        return self.verdict.passed

    def figures(self) -> dict[str, Any]:
        """One entry of the latency-vs-load curve (repeats pooled for latencies)."""
        per_run = [openloop.figures(r) for r in self.runs]
        latency = np.concatenate([r.latency_s for r in self.runs])
        pooled = openloop.figures(self.runs[0]) if len(self.runs) == 1 else {}
        achieved = median([f["achieved_rps"] for f in per_run])
        out: dict[str, Any] = {
            "offered_rps": self.rate_rps, "stage": self.stage,
            "offered_realized_rps": median([f["offered_realized_rps"] for f in per_run]),
            "achieved_rps": achieved,
            "goodput_rps": goodput_rps(achieved, self.verdict.figures),
            "sustainable": self.sustainable, "uncertain": self.verdict.uncertain,
            "failing": self.verdict.failing(), "repeats": len(self.runs),
        }
        for p in (50, 90, 95, 99):
            out[f"latency_p{p}_ms"] = (float(np.percentile(latency, p) * 1e3)
                                       if latency.size else None)
        low, high, _ = quantile_ci(latency * 1e3, 0.95)
        out["latency_p95_ms_ci"] = [low, high]
        for key in ("requests_scheduled", "requests_answered", "requests_failed",
                    "requests_dropped", "requests_waited_for_slot", "requests_late"):
            out[key] = sum(f[key] for f in per_run)
        for key in ("schedule_lag_p99_ms", "schedule_lag_max_ms", "concurrency_peak"):
            values = [f[key] for f in per_run if f[key] is not None]
            out[key] = max(values) if values else None
        for key in ("concurrency_mean", "service_p95_ms", "client_cpu_per_request_us",
                    "tokens_per_s"):
            out[key] = median([f[key] for f in per_run])
        out["error_rate"] = self.verdict.figures["error_rate"]
        out["keep_up_ratio"] = self.verdict.figures["keep_up_ratio"]
        out["checks"] = self.verdict.as_dict()["checks"]
        out["errors"] = [e for f in per_run for e in f["errors"]][:5]
        out["runs"] = [dict(r.info) for r in self.runs]
        if pooled:
            out["latency_max_ms"] = pooled["latency_max_ms"]
        return out


@dataclass
class CapacityResult:
    points: list[Point]
    estimates: list[float]
    bracket: tuple[float | None, float | None]
    lower_bound_only: bool
    goodputs: list[float | None] = field(default_factory=list)
    budget_note: str = ""

    @property
    def saturated(self) -> bool:
        return any(not p.sustainable for p in self.points)

    def figures(self) -> dict[str, Any]:
        est = [float(e) for e in self.estimates]
        low, high, level = quantile_ci(est, 0.5, clip=True) if est else (None, None, None)
        curve = sorted((p.figures() for p in self.points), key=lambda f: f["offered_rps"])
        out = {
            "max_rate_rps_rounds": est, "max_rate_rps_round_median": median(est),
            "max_rate_rps_round_spread_pct": spread_pct(est),
            "max_rate_rps_round_ci": [low, high], "round_ci_level": level,
            "max_rate_is_lower_bound": self.lower_bound_only,
            "goodput_rps_rounds": self.goodputs,
            "goodput_rps_round_median": median([g for g in self.goodputs if g is not None]),
            "saturated": self.saturated,
            "sweep_bracket_rps": list(self.bracket), "rounds": len(est),
            "points_measured": len(self.points),
            "runs_measured": sum(len(p.runs) for p in self.points),
            "load_curve": curve,
        }
        if self.budget_note:
            out["budget_note"] = self.budget_note
        if not self.saturated:
            out["saturation_note"] = ("no offered rate was unsustainable: the max sustainable "
                                      "rate is only a lower bound; raise the rates")
        return out


class CapacitySearch:
    def __init__(self, measure: Measure, rules: Sequence[SloRule], *,
                 keep_up: float = KEEP_UP, max_repeats: int = DEFAULT_MAX_REPEATS,
                 steps: int = DEFAULT_STEPS, resolution: float = DEFAULT_RESOLUTION,
                 stop_after: int = DEFAULT_STOP_AFTER, max_points: int = DEFAULT_MAX_POINTS):
        if steps < 0 or max_repeats < 0 or stop_after < 1 or max_points < 1:
            raise ValueError("steps and max_repeats must be >= 0, stop_after and max_points >= 1")
        self.measure, self.rules, self.keep_up = measure, tuple(rules), keep_up
        self.max_repeats, self.steps, self.resolution = max_repeats, steps, resolution
        self.stop_after, self.max_points = stop_after, max_points
        self.points: list[Point] = []
        self._attempts = 0
        self._sweep_runs = 0

    def _run(self, rate: float, attempt: int | None) -> OpenLoopResult:
        if attempt is not None and self._sweep_runs >= self.max_points:
            raise BudgetExhausted(f"the sweep stopped after {self.max_points} runs (max_points)")
        self._attempts += 1
        if attempt is None:  # search points: numbered in the order they are measured
            attempt = SEARCH_ATTEMPTS + self._attempts
        else:
            self._sweep_runs += 1
        return self.measure(rate, attempt)

    def point(self, rate: float, stage: str, slot: int | None = None) -> Point:
        """Measure one rate; again while the verdict is uncertain (bounded). slot: the sweep
        position, which fixes the attempt numbers, so a sweep is repeatable run to run."""
        def attempt(repeat: int) -> int | None:
            return None if slot is None else slot * (self.max_repeats + 1) + repeat

        runs = [self._run(rate, attempt(0))]
        verdict = evaluate(runs, self.rules, keep_up_ratio=self.keep_up)
        while verdict.uncertain and len(runs) <= self.max_repeats:
            try:
                runs.append(self._run(rate, attempt(len(runs))))
            except BudgetExhausted:
                break
            verdict = evaluate(runs, self.rules, keep_up_ratio=self.keep_up)
        found = Point(rate, stage, runs, verdict)
        self.points.append(found)
        return found

    def sweep(self, rates: Sequence[float]) -> list[Point]:
        out, failures = [], 0
        for slot, rate in enumerate(sorted(set(float(r) for r in rates))):
            p = self.point(rate, "sweep", slot)
            out.append(p)
            failures = 0 if p.sustainable else failures + 1
            if failures >= self.stop_after:
                break
        return out

    @staticmethod
    def bracket(points: Sequence[Point]) -> tuple[float | None, float | None]:
        """(highest sustainable rate below the lowest unsustainable one, that lowest one)."""
        failing = [p.rate_rps for p in points if not p.sustainable]
        top = min(failing) if failing else None
        passing = [p.rate_rps for p in points if p.sustainable and (top is None or p.rate_rps < top)]
        return (max(passing) if passing else None), top

    def search(self, low: float, high: float, stage: str) -> float:
        lo = low
        for _ in range(self.steps):
            if high - lo <= self.resolution * high:
                break
            mid = (lo + high) / 2
            if self.point(mid, stage).sustainable:
                lo = mid
            else:
                high = mid
        return lo

    def run(self, rates: Sequence[float], *, searches: int = DEFAULT_SEARCHES) -> CapacityResult:
        note = ""
        try:
            swept = self.sweep(rates)
        except BudgetExhausted as exc:
            swept, note = list(self.points), str(exc)
        low, high = self.bracket(swept)
        if high is None:  # never saturated: the top rate is all that can be said
            top = max((p.rate_rps for p in swept), default=0.0)
            return CapacityResult(list(self.points), [top], (low, high), True,
                                  [self._goodput_at(top)], note)
        if low is None:  # not even the lowest rate held: nothing to bisect towards
            return CapacityResult(list(self.points), [0.0], (low, high), False, [None], note)
        estimates = []
        for k in range(max(1, searches)):
            try:
                estimates.append(self.search(low, high, f"search {k + 1}"))
            except BudgetExhausted as exc:
                note = str(exc)
                break
        if not estimates:
            estimates = [low]
        return CapacityResult(list(self.points), estimates, (low, high), False,
                              [self._goodput_at(e) for e in estimates], note)

    def _goodput_at(self, rate: float) -> float | None:
        """Goodput of the last sustainable point measured at `rate` (None if there is none)."""
        for p in reversed(self.points):
            if p.rate_rps == rate and p.sustainable:
                return p.figures()["goodput_rps"]
        return None


def rates_from_capacity(capacity_rps: float,
                        fractions: Sequence[float] = DEFAULT_FRACTIONS) -> list[float]:
    """Offered rates as fractions of a measured closed-loop capacity (rounded to 0.1 req/s)."""
    if not capacity_rps > 0:
        raise ValueError("the closed-loop capacity must be > 0 to derive rates from it")
    return sorted({max(0.1, round(capacity_rps * f, 1)) for f in fractions})
