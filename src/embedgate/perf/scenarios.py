"""The perf plan: every scenario's workload, rounds and warm-ups, in one table.

Sizes are set so the whole suite on all-MiniLM-L6-v2 / vLLM CPU (2 cores) takes about three
minutes including the server start, while each scenario has enough timed rounds for the gate's
round medians (>= 5 rounds, >= 1 warm-up round; ``--embedgate-perf-rounds`` overrides the rounds).
A round is a fixed number of requests, never a fixed time, so two runs do the same work.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    id: str                 # stable name, the key the gate matches on ("latency/short")
    group: str              # pytest-benchmark group
    length: str = "short"   # input length: short | medium | long (see workload.py)
    batch: int = 1          # inputs per request
    concurrency: int = 1    # requests in flight (closed loop)
    requests: int = 32      # requests per round
    rounds: int = 5         # timed rounds
    warmup_rounds: int = 1  # untimed rounds first (same workload shape, different texts)

    def __post_init__(self) -> None:
        if min(self.batch, self.concurrency, self.requests, self.rounds) < 1:
            raise ValueError(f"{self.id}: batch, concurrency, requests and rounds must be >= 1")
        if self.warmup_rounds < 0:
            raise ValueError(f"{self.id}: warmup_rounds must be >= 0")

    def describe(self) -> str:
        return (f"{self.requests} requests x {self.batch} {self.length} input(s), "
                f"{self.concurrency} in flight, {self.warmup_rounds} warm-up + {self.rounds} "
                f"timed rounds")


LATENCY = (
    Scenario("latency/short", "latency", "short", requests=40),
    Scenario("latency/medium", "latency", "medium", requests=20),
    Scenario("latency/long", "latency", "long", requests=12),
)
BATCH = (
    Scenario("batch/1", "batch", batch=1, requests=32),
    Scenario("batch/8", "batch", batch=8, requests=8),
    Scenario("batch/32", "batch", batch=32, requests=4),
    Scenario("batch/128", "batch", batch=128, requests=2),
)
# 256 requests per round (4 full waves at 64 in flight) and 7 rounds: vLLM CPU batches concurrent
# requests unevenly, so single rounds at 16/64 in flight vary by up to 2x; the median of 7 holds.
CONCURRENCY = tuple(Scenario(f"concurrency/{c}", "concurrency", concurrency=c, requests=256,
                             rounds=7) for c in (1, 4, 16, 64))
PLAN = {s.id: s for s in (*LATENCY, *BATCH, *CONCURRENCY)}

# Startup: the session's own launch (plus --embedgate-perf-startup-launches more), the first
# request after ready (cold), then this many requests of the same shape for comparison.
STARTUP_WARM_REQUESTS = 20

# Client overhead against the trivial server: requests per measurement and their warm-up.
OVERHEAD_REQUESTS = 10_000
OVERHEAD_ROUNDS = 3
OVERHEAD_WARMUP = 1_000
OVERHEAD_CONCURRENCY = (1, 64)
CLIENT_MIN_RPS = 2_000  # issue 5: the load generator sustains at least this on one core

# Encode rate (issue 3): the kit end to end vs sentence-transformers in process, alternating.
ENCODE_RATE_ROUNDS = 5
# The floor that says the kit's encode path is not the bottleneck of a quality run. Measured best-
# round ratios (README): 1.47-1.65 on 2 AMD EPYC cores (batch 32); on 2 Intel Xeon cores (AMX)
# 0.81-0.92 with batch 32, 0.91-0.94 with the client's batch 64.
ENCODE_RATE_MIN_RATIO = 0.8

# Open-loop client headroom (issue 13): Poisson schedules to the trivial server, this many
# requests/s for this many seconds, one warm-up second first; the lag P99 is the figure.
OPEN_LOOP_CLIENT_RATES = (1_000, 10_000)
OPEN_LOOP_CLIENT_SECONDS = 2.0
