"""The capacity scenario: closed-loop probe, open-loop rate sweep, max sustainable rate under
the SLO, and the closed-loop P95 at the same throughput (coordinated omission made visible).

1. Closed-loop probe at 1..64 in flight: its best throughput is the capacity the default rates
   are fractions of, and its curve (throughput, P95 per concurrency) is what a closed-loop
   benchmark would report.
2. The sweep and the bounded search (`sweep.CapacitySearch`), each point an open-loop run
   (`openloop`) with the server's /metrics scraped meanwhile (`metrics_scrape`) and every request
   written to the per-request JSONL export.
3. At the highest sustainable rate (near saturation), a closed-loop run whose concurrency is
   interpolated from the probe to give the same throughput: its P95 against the open-loop P95.

The figures go into the benchmark's ``extra_info``: ``max_rate_rps_*`` and ``goodput_rps_*``
round figures over the repeated searches (gated like any round median: ``max_rate_rps:-10%``),
the latency-vs-load curve (``load_curve``), the probe curve and the comparison.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from embedgate.perf.arrivals import schedule_digest
from embedgate.perf.loadgen import LoadGenerator, raise_on_errors
from embedgate.perf.metrics_scrape import MetricsScraper
from embedgate.perf.openloop import OpenLoopGenerator, OpenLoopResult, run_processes
from embedgate.perf.runner import PerfSession
from embedgate.perf.slo import KEEP_UP
from embedgate.perf.stats import latency_figures
from embedgate.perf.sweep import CapacitySearch, rates_from_capacity
from embedgate.perf.traffic import Workload, from_file, requests_digest, synthetic

SCENARIO = "capacity/open_loop"
PROBE_CONCURRENCY = (1, 4, 16, 64)
PROBE_REQUESTS = {1: 64, 4: 128, 16: 384, 64: 512}
WARMUP_REQUESTS = 64
MIN_POINT_REQUESTS = 50
MAX_STRETCH = 4
COMPARE_REQUESTS = 384
TEXT_BASE = 5_000_000     # text indices of this scenario: far from the other scenarios'
TEXT_STRIDE = 100_000     # per attempt, so no two attempts share a text


def point_requests(rate: float, point_s: float) -> int:
    """rate x point_s requests; at least MIN_POINT_REQUESTS, unless that would stretch the point
    past MAX_STRETCH x point_s (a low rate gets fewer requests, not minutes)."""
    n = int(math.ceil(rate * point_s))
    if n >= MIN_POINT_REQUESTS:
        return n
    return max(2, min(MIN_POINT_REQUESTS, int(math.ceil(rate * point_s * MAX_STRETCH))))


def closed_loop(gen: LoadGenerator, session: PerfSession, n_words: int, *, concurrency: int,
                requests: int) -> dict[str, Any]:
    """One closed-loop run of short single inputs; its throughput and latency figures."""
    batch = [gen.prepare(t) for t in session.texts(n_words, requests)]
    gen.warm_connections(concurrency)
    result = gen.run(batch, concurrency=concurrency)
    raise_on_errors(result, f"closed loop at {concurrency} in flight")
    lat = latency_figures(result.latencies_s)
    return {"concurrency": concurrency, "requests": requests,
            "throughput_rps": result.n_requests / result.wall_s,
            **{k.replace("latency_", ""): v for k, v in lat.items()
               if k in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")}}


def concurrency_for(curve: list[dict[str, Any]], rps: float) -> int:
    """The concurrency a closed loop needs for `rps`, interpolated on the probe curve."""
    points = sorted((p["throughput_rps"], p["concurrency"]) for p in curve)
    xs = np.array([p[0] for p in points])
    ys = np.array([p[1] for p in points], dtype=float)
    return max(1, int(round(float(np.interp(rps, xs, ys)))))


def workload_for(session: PerfSession) -> Workload:
    load = session.options.load
    if load.perf_workload:
        return from_file(load.perf_workload, batch_mix=load.perf_batch_mix, seed=load.perf_seed)
    n_words = session.lengths()["short"].n_words
    return synthetic(lambda count, attempt: session.stream.texts(
        n_words, count, first=TEXT_BASE + attempt * TEXT_STRIDE), n_words=n_words,
        batch_mix=load.perf_batch_mix, seed=load.perf_seed)


def export_rows(sink: TextIO, result: OpenLoopResult, scenario: str = SCENARIO) -> None:
    """One JSON line per scheduled request: when it was due and sent, latency, status, tokens."""
    info = result.info
    for i in range(result.n):
        sent, done = result.sent_s[i], result.done_s[i]
        row = {"scenario": scenario, "attempt": info.get("attempt"),
               "offered_rps": info.get("offered_rps"), "index": i,
               "scheduled_s": round(float(result.scheduled_s[i]), 6),
               "sent_s": None if np.isnan(sent) else round(float(sent), 6),
               "latency_ms": None if not result.ok[i] else
               round(float(done - result.scheduled_s[i]) * 1e3, 4),
               "service_ms": None if np.isnan(done) else round(float(done - sent) * 1e3, 4),
               "status": int(result.status[i]), "ok": bool(result.ok[i]),
               "waited_for_slot": bool(result.waited[i]),
               "tokens": None if result.tokens[i] < 0 else int(result.tokens[i]),
               "inputs": int(result.n_inputs[i])}
        sink.write(json.dumps(row, separators=(",", ":")) + "\n")


class _Points:
    """measure(rate, attempt) for the search: one open-loop run with its context attached."""

    def __init__(self, session: PerfSession, gen: OpenLoopGenerator, workload: Workload,
                 sink: TextIO | None):
        self.session, self.gen, self.workload, self.sink = session, gen, workload, sink
        self.load = session.options.load

    def __call__(self, rate: float, attempt: int) -> OpenLoopResult:
        load = self.load
        n = point_requests(rate, load.perf_point_s)
        requests = [self.gen.prepare(x) for x in self.workload.inputs(n, attempt)]
        arrivals = load.perf_arrivals.at(rate, seed=load.perf_seed + attempt)
        offsets = arrivals.offsets(n, trace=self.workload.timestamps)
        scraper = (MetricsScraper(self.session.server.base_url, api_key=self.session.api_key)
                   if load.perf_metrics == "on" else None)
        if scraper is not None:
            scraper.__enter__()
        try:
            if load.perf_processes > 1:
                result = run_processes(self.gen.base_url, self.gen.model, requests, offsets,
                                       processes=load.perf_processes,
                                       api_key=self.session.api_key,
                                       max_in_flight=load.perf_max_in_flight,
                                       on_full=load.perf_on_full)
            else:
                result = self.gen.run_schedule(requests, offsets,
                                               max_in_flight=load.perf_max_in_flight,
                                               on_full=load.perf_on_full)
        finally:
            if scraper is not None:
                scraper.__exit__(None, None, None)
        result.info.update(attempt=attempt, offered_rps=rate, arrival_seed=arrivals.seed,
                           schedule_sha256=schedule_digest(offsets),
                           requests_sha256=requests_digest([r.data for r in requests]),
                           **(scraper.figures if scraper is not None else
                              {"server_metrics_null_reason": "--embedgate-perf-metrics off"}))
        if self.sink is not None:
            export_rows(self.sink, result)
        return result


def run(session: PerfSession, benchmark: Any, *, export_path: Path | None = None,
        record: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The whole scenario as one benchmark round; returns (and records) its figures."""
    load = session.options.load
    n_words = session.lengths()["short"].n_words
    workload = workload_for(session)
    benchmark.group = "capacity"
    state: dict[str, Any] = {}
    sink = None
    if export_path is not None:
        export_path.parent.mkdir(parents=True, exist_ok=True)
        sink = export_path.open("w", encoding="utf-8")

    def measure_all() -> None:
        with OpenLoopGenerator(session.server.base_url, session.server.served_name,
                               api_key=session.api_key,
                               encoding_format=session.options.perf_encoding) as gen:
            closed_loop(gen, session, n_words, concurrency=4, requests=WARMUP_REQUESTS)
            probe = [closed_loop(gen, session, n_words, concurrency=c,
                                 requests=PROBE_REQUESTS[c]) for c in PROBE_CONCURRENCY]
            capacity = max(p["throughput_rps"] for p in probe)
            rates = (rates_from_capacity(capacity, load.perf_rates.values)
                     if load.perf_rates.of_capacity else list(load.perf_rates.values))
            search = CapacitySearch(_Points(session, gen, workload, sink), load.perf_slo)
            result = search.run(rates, searches=load.perf_searches)
            state.update(probe=probe, capacity=capacity, rates=rates, result=result,
                         compare=_compare(gen, session, n_words, probe, result))

    sampler = session.sampler().start()
    try:
        benchmark.pedantic(measure_all, rounds=1, warmup_rounds=0, iterations=1)
    finally:
        memory = sampler.stop()
        if sink is not None:
            sink.close()
    result = state["result"]
    figures: dict[str, Any] = {
        "scenario": SCENARIO, "group": "capacity",
        "plan": (f"closed-loop probe at {', '.join(map(str, PROBE_CONCURRENCY))} in flight; "
                 f"open-loop sweep at {load.perf_rates.describe()} "
                 f"({load.perf_arrivals.describe().split(' at ')[0]}, {load.perf_point_s:g} s "
                 f"per rate), then {load.perf_searches} bounded searches under "
                 f"{', '.join(r.text for r in load.perf_slo)}"),
        **result.figures(), "closed_loop_capacity_rps": state["capacity"],
        "closed_loop_curve": state["probe"], "offered_rates_rps": state["rates"],
        "coordinated_omission": state["compare"],
        "slo": [r.text for r in load.perf_slo], "keep_up_ratio_min": KEEP_UP,
        "open_loop_options": load.as_dict(), **workload.as_dict(),
        "requests_export": str(export_path) if export_path else None,
        "round_median_not_gated": (
            "latency is per offered rate here (load_curve); this scenario's round figure is "
            "max_rate_rps over its searches, judged by capacity/*:max_rate_rps"),
        **memory, **session.common()}
    benchmark.extra_info.update(figures)
    if record is not None:
        record(SCENARIO, figures)
    return figures


def _compare(gen: OpenLoopGenerator, session: PerfSession, n_words: int,
             probe: list[dict[str, Any]], result) -> dict[str, Any] | None:
    """Closed-loop P95 at the throughput the open loop achieved at its highest sustainable
    rate (near saturation): what a closed-loop benchmark would have reported for that load."""
    sustained = [p for p in result.points if p.sustainable]
    if not sustained:
        return None
    point = max(sustained, key=lambda p: p.rate_rps).figures()
    if point["achieved_rps"] is None:
        return None
    c = concurrency_for(probe, point["achieved_rps"])
    closed = closed_loop(gen, session, n_words, concurrency=c, requests=COMPARE_REQUESTS)
    return {"offered_rps": point["offered_rps"],
            "open_loop_achieved_rps": point["achieved_rps"],
            "open_loop_p95_ms": point["latency_p95_ms"],
            "open_loop_p95_ms_ci": point["latency_p95_ms_ci"],
            "closed_loop_concurrency": c, "closed_loop_throughput_rps": closed["throughput_rps"],
            "closed_loop_p95_ms": closed["p95_ms"], "closed_loop_p50_ms": closed["p50_ms"],
            "p95_ratio_open_over_closed": (point["latency_p95_ms"] / closed["p95_ms"]
                                           if closed["p95_ms"] else None)}
