"""Soak: a sustained load of a fixed request count, watching the server's memory and errors.

Why: a leak of a few KiB per request is invisible in a 256-request round and takes a server down
after a day. The soak sends `requests` requests in windows of `window`, `concurrency` in flight,
and after each window reads the RSS of the server's process tree and the window's errors; a time
cap bounds it on a slow machine (the windows done by then are judged, and the figures say so).

The memory slope, in bytes per 1,000 requests, is the least-squares slope over the windows after
the warm-up share (scipy.stats.linregress), with its 95% CI. The verdict fails when the CI's lower
bound is above the allowed growth (growth shown, not noise), when the CI is too wide to clear
the bound (too few or too noisy windows: nothing was shown either way), and when any request
failed. Allocator warm-up, caches filling and the first requests' compilation sit in the
warm-up share, which is not judged.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from scipy import stats

from embedgate.perf.loadgen import LoadGenerator, PreparedRequest

MIN_WINDOWS_JUDGED = 8
MAX_ERRORS_KEPT = 5


@dataclass(frozen=True)
class SoakPlan:
    requests: int = 4000             # the fixed count; the cap may stop it sooner
    window: int = 100                # requests between two memory samples
    concurrency: int = 4
    time_cap_s: float = 120.0
    warmup_share: float = 0.25       # the first windows, not judged
    max_growth_per_1k: float = 2**20  # bytes per 1,000 requests the server may grow by

    def __post_init__(self) -> None:
        if min(self.requests, self.window, self.concurrency) < 1 or self.time_cap_s <= 0:
            raise ValueError("requests, window, concurrency and time_cap_s must be positive")
        if not 0 <= self.warmup_share < 1:
            raise ValueError("warmup_share must be in [0, 1)")
        if self.requests < self.window * MIN_WINDOWS_JUDGED / (1 - self.warmup_share):
            raise ValueError(f"{self.requests} requests give fewer than {MIN_WINDOWS_JUDGED} "
                             f"judged windows of {self.window}")

    def describe(self) -> str:
        return (f"{self.requests} requests, {self.concurrency} in flight, memory sampled every "
                f"{self.window}, capped at {self.time_cap_s:g} s; the first "
                f"{self.warmup_share:.0%} not judged")


@dataclass(frozen=True)
class Window:
    """The state after one window: requests done so far, server RSS, this window's errors."""

    done: int
    rss_bytes: int | None
    errors: int
    elapsed_s: float


def run(gen: LoadGenerator, request: Callable[[int], PreparedRequest],
        rss: Callable[[], int | None], plan: SoakPlan, *,
        clock: Callable[[], float] = time.monotonic
        ) -> tuple[list[Window], list[str], list[float]]:
    """Send the plan's requests window by window: the windows, the first error messages and
    every request's latency.

    request(i) builds the i-th request (distinct texts, so no server cache can help).
    """
    windows: list[Window] = []
    errors: list[str] = []
    latencies: list[float] = []
    start, done = clock(), 0
    gen.warm_connections(plan.concurrency)
    while done < plan.requests and clock() - start < plan.time_cap_s:
        count = min(plan.window, plan.requests - done)
        result = gen.run([request(done + k) for k in range(count)],
                         concurrency=plan.concurrency)
        done += count
        errors += result.errors[:MAX_ERRORS_KEPT - len(errors)]
        latencies += result.latencies_s
        windows.append(Window(done, rss(), result.n_errors, clock() - start))
    return windows, errors, latencies


def memory_slope(windows: list[Window], warmup_share: float) -> dict[str, Any]:
    """Bytes per 1,000 requests over the judged windows: slope, 95% CI, n; None where unknown."""
    judged = windows[math.ceil(len(windows) * warmup_share):]
    points = [(w.done, w.rss_bytes) for w in judged if w.rss_bytes is not None]
    out: dict[str, Any] = {"memory_slope_bytes_per_1k": None, "memory_slope_ci": None,
                           "memory_slope_windows": len(points)}
    if len(points) < 3:
        out["memory_slope_null_reason"] = (
            f"{len(points)} judged windows with a memory reading; the slope needs at least 3")
        return out
    x, y = zip(*points)
    fit = stats.linregress(x, y)
    t = stats.t.ppf(0.975, len(points) - 2)
    slope, half = fit.slope * 1000, t * fit.stderr * 1000
    out.update(memory_slope_bytes_per_1k=slope, memory_slope_ci=[slope - half, slope + half],
               memory_slope_r=fit.rvalue, memory_first_judged_bytes=y[0],
               memory_last_bytes=y[-1])
    return out


def judge(windows: list[Window], errors: list[str], plan: SoakPlan) -> dict[str, Any]:
    """The soak's figures and verdict: `soak_passed` and, when it failed, `soak_failures`."""
    done = windows[-1].done if windows else 0
    elapsed = windows[-1].elapsed_s if windows else 0.0
    figures: dict[str, Any] = {
        "soak_plan": plan.describe(), "soak_requests_planned": plan.requests,
        "soak_requests_done": done, "soak_elapsed_s": elapsed,
        "soak_capped": done < plan.requests,
        "soak_errors": sum(w.errors for w in windows),
        "soak_errors_by_window": [w.errors for w in windows],
        "soak_first_errors": errors,
        "soak_rss_by_window": [[w.done, w.rss_bytes] for w in windows],
        "soak_max_growth_bytes_per_1k": plan.max_growth_per_1k,
        **memory_slope(windows, plan.warmup_share)}
    failures = []
    if figures["soak_errors"]:
        first = next(i for i, w in enumerate(windows) if w.errors)
        failures.append(f"{figures['soak_errors']} of {done} requests failed, the first in "
                        f"window {first + 1} (requests {first * plan.window + 1}-"
                        f"{windows[first].done}): {'; '.join(errors[:2])}")
    ci = figures["memory_slope_ci"]
    bound = plan.max_growth_per_1k
    if ci is None:
        failures.append(f"memory growth not judged: {figures['memory_slope_null_reason']}")
    elif ci[0] > bound:
        failures.append(f"the server's memory grows by {_kib(figures['memory_slope_bytes_per_1k'])}"
                        f" per 1,000 requests (95% CI {_kib(ci[0])} to {_kib(ci[1])}), above the "
                        f"{_kib(bound)} allowed")
    elif ci[1] > bound:
        failures.append(f"memory growth not shown to stay within {_kib(bound)} per 1,000 "
                        f"requests: slope {_kib(figures['memory_slope_bytes_per_1k'])}, 95% CI "
                        f"{_kib(ci[0])} to {_kib(ci[1])} over {figures['memory_slope_windows']} "
                        f"windows (too noisy or too few: soak longer)")
    figures["soak_passed"] = not failures
    figures["soak_failures"] = failures
    return figures


def _kib(value: float) -> str:
    return f"{value / 1024:,.0f} KiB"
