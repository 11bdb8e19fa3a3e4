"""Synthetic open-loop runs for the kit's unit tests: a FIFO queue with a fixed service time,
simulated on virtual time (no server, no clock)."""

from __future__ import annotations

import numpy as np

from embedgate.perf.arrivals import Arrivals
from embedgate.perf.openloop import OpenLoopResult


def result_from(offsets, latencies_s, ok=None, lag_s=None) -> OpenLoopResult:
    sched = np.asarray(offsets, dtype=float)
    lat = np.asarray(latencies_s, dtype=float)
    n = sched.size
    ok = np.ones(n, bool) if ok is None else np.asarray(ok, bool)
    lag = np.zeros(n) if lag_s is None else np.asarray(lag_s, dtype=float)
    return OpenLoopResult(
        scheduled_s=sched, sent_s=sched + lag, done_s=sched + lat,
        status=np.where(ok, 200, 500), ok=ok, waited=np.zeros(n, bool),
        tokens=np.full(n, 5), n_inputs=np.ones(n, int), max_in_flight=256, peak_in_flight=1,
        client_cpu_s=0.0, wall_s=float(sched[-1] + lat.max()) if n else 0.0)


def fifo_server(rate_rps: float, *, service_s: float, n: int, seed: int,
                base_latency_s: float = 0.0) -> OpenLoopResult:
    """Poisson arrivals into one FIFO server taking `service_s` per request: saturates at
    1 / service_s requests/s, where the queue (and P95) grows without bound."""
    offsets = Arrivals("poisson", rate_rps, seed=seed).offsets(n)
    done = np.empty(n)
    free_at = 0.0
    for i, t in enumerate(offsets):
        free_at = max(free_at, t) + service_s
        done[i] = free_at
    return result_from(offsets, done - offsets + base_latency_s)
