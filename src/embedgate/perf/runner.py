"""Runs a scenario through pytest-benchmark and turns its raw timings into figures.

One pytest-benchmark round is one fixed workload (N requests, C in flight): its round times are
what ``--benchmark-compare`` / ``--benchmark-compare-fail`` compare, as documented there. The kit's
own figures (percentiles, throughput, tokens/s, memory) come from per-request timings of the
timed rounds and go into the benchmark's ``extra_info`` with units in their names.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import httpx

from embedgate.serve.client import auth_headers
from embedgate.perf import soak
from embedgate.perf.loadgen import LoadGenerator, LoadResult, raise_on_errors, usage_tokens
from embedgate.perf.locust_load import LocustGenerator
from embedgate.perf.memory import MemorySampler, ProcessTreeMemory
from embedgate.serve.gpu import NvmlProbe, memory_fraction
from embedgate.perf.options import PerfOptions
from embedgate.perf.scenarios import STARTUP_WARM_REQUESTS, Scenario
from embedgate.perf.stats import latency_figures, round_figures
from embedgate.perf.workload import Calibrator, TextLength, WordStream, standard_lengths
from embedgate.serve.lifecycle import ServerInfo

Record = Callable[[str, dict[str, Any]], None]


def _ms_list(latencies_s: list[float]) -> list[float]:
    return [round(t * 1e3, 4) for t in latencies_s]


def summarize(timed: list[LoadResult]) -> dict[str, Any]:
    """Pooled percentiles, per-round medians and spread, rates and the client's own cost."""
    lat = [t for r in timed for t in r.latencies_s]
    wall = sum(r.wall_s for r in timed)
    n_req, n_in = len(lat), sum(r.n_inputs for r in timed)
    tokens = [r.tokens for r in timed]
    cpu = sum(r.client_cpu_s for r in timed)
    out: dict[str, Any] = {
        "requests_timed": n_req, "inputs_timed": n_in, "wall_timed_s": wall,
        **latency_figures(lat),
        **round_figures([r.latencies_s for r in timed], [r.wall_s for r in timed],
                        [r.n_inputs for r in timed], tokens),
        "throughput_rps": n_req / wall if wall else None,
        "inputs_per_s": n_in / wall if wall else None,
        "tokens_per_s": (sum(tokens) / wall if wall and tokens and None not in tokens
                         else None),
        "client_cpu_per_request_us": cpu / n_req * 1e6 if n_req else None,
        "client_cpu_share_pct": cpu / wall * 100 if wall else None,
        "latencies_ms_by_round": [_ms_list(r.latencies_s) for r in timed],
    }
    if out["tokens_per_s"] is None:
        out["tokens_per_s_null_reason"] = "the server's answers carry no usage.prompt_tokens"
    return out


class PerfSession:
    """What the scenarios of one session share: server, memory probes, calibrated inputs."""

    def __init__(self, server: ServerInfo, *, max_tokens: int, options: PerfOptions,
                 stream: WordStream, record: Record, api_key: str | None = None,
                 nvml_module: Any = None):
        self.server, self.max_tokens, self.options = server, max_tokens, options
        self.stream, self.record, self.api_key = stream, record, api_key
        self.gpu, self.gpu_reason = NvmlProbe.open(nvml_module)
        self.tree = ProcessTreeMemory(
            server.pid if server.backend != "external" else None,
            extra_roots=tuple(m["pid"] for m in server.members if m["pid"] != server.pid))
        self._lengths: dict[str, TextLength] | None = None
        self._next_text = 1000  # texts 0..999 are for the startup scenario
        self.at_ready = self._at_ready()

    def close(self) -> None:
        if self.gpu is not None:
            self.gpu.close()

    # -- shared pieces ----------------------------------------------------------------------
    def _at_ready(self) -> dict[str, Any]:
        """Static memory: right after ready, before any perf request (the cold test runs first)."""
        out: dict[str, Any] = {"rss_at_ready_bytes": self.server.rss_at_ready_bytes,
                               "pss_at_ready_bytes": self.tree.pss()}
        if self.server.members:  # a topology: the total above, each member here
            out["rss_at_ready_by_member"] = {m["role"]: m["rss_at_ready_bytes"]
                                             for m in self.server.members}
        if self.gpu is not None:
            sample = self.gpu.sample(self.tree.pids())
            out.update(vram_device_at_ready_bytes=sample.device_used_bytes,
                       vram_process_at_ready_bytes=sample.process_used_bytes)
            out.update(self.gpu.info())
        else:
            out.update(vram_device_at_ready_bytes=None, vram_process_at_ready_bytes=None,
                       gpu_name=None, gpu_driver=None, gpu_memory_total_bytes=None)
        out.update(memory_fraction(self.server.backend, self.server.command,
                                   on_gpu=self.gpu is not None))
        return out

    def common(self) -> dict[str, Any]:
        return {"backend": self.server.backend, "served_name": self.server.served_name,
                "encoding_format": self.options.perf_encoding, **self.at_ready}

    def sampler(self) -> MemorySampler:
        return MemorySampler(self.tree, interval_s=self.options.perf_sample_ms / 1e3,
                             gpu=self.gpu, gpu_reason=self.gpu_reason)

    def loadgen(self) -> LoadGenerator:
        return LoadGenerator(self.server.base_url, self.server.served_name, api_key=self.api_key,
                             encoding_format=self.options.perf_encoding)

    def scenario_loadgen(self) -> LoadGenerator | LocustGenerator:
        """The closed-loop scenarios' engine (--embedgate-perf-load-engine): the same
        interface and LoadResult either way."""
        o = self.options
        if o.perf_load_engine != "locust":
            return self.loadgen()
        return LocustGenerator(self.server.base_url, self.server.served_name,
                               api_key=self.api_key, encoding_format=o.perf_encoding,
                               local_workers=o.perf_locust_workers,
                               expect_workers=o.perf_locust_expect_workers or None,
                               bind_host=o.perf_locust_bind_host, port=o.perf_locust_port or None)

    def lengths(self) -> dict[str, TextLength]:
        """short/medium/long calibrated once per session against the server's own token counts."""
        if self._lengths is None:
            with httpx.Client(base_url=self.server.base_url, timeout=120.0,
                              headers=auth_headers(self.api_key)) as http:
                def post(texts):
                    r = http.post("/v1/embeddings", json={"model": self.server.served_name,
                                                          "input": list(texts)})
                    return r.status_code, usage_tokens(r.content) if r.status_code == 200 else None
                self._lengths = standard_lengths(Calibrator(self.stream, post), self.max_tokens)
        return self._lengths

    def texts(self, n_words: int, count: int) -> list[str]:
        """`count` texts never sent before in this session (no server cache can help)."""
        first, self._next_text = self._next_text, self._next_text + count
        return self.stream.texts(n_words, count, first=first)

    # -- scenarios --------------------------------------------------------------------------
    def run(self, benchmark: Any, scenario: Scenario) -> dict[str, Any]:
        """Warm-up and timed rounds of one scenario; returns (and records) its figures."""
        length = self.lengths()[scenario.length]
        rounds = self.options.perf_rounds or scenario.rounds
        warmup = scenario.warmup_rounds
        benchmark.group = scenario.group
        with self.scenario_loadgen() as gen:
            def request():  # a bare string for batch 1, as most clients send a single input
                texts = self.texts(length.n_words, scenario.batch)
                return gen.prepare(texts[0] if scenario.batch == 1 else texts)
            plan = [[request() for _ in range(scenario.requests)]
                    for _ in range(warmup + rounds)]
            gen.warm_connections(scenario.concurrency)
            done: list[LoadResult] = []
            calls = itertools.count()

            def setup():
                return (next(calls),), {}

            def round_(k: int) -> None:
                result = gen.run(plan[k], concurrency=scenario.concurrency)
                raise_on_errors(result, f"{scenario.id} round {k}")
                done.append(result)

            sampler = self.sampler().start()
            try:
                benchmark.pedantic(round_, setup=setup, rounds=rounds, warmup_rounds=warmup,
                                   iterations=1)
            finally:
                memory = sampler.stop()
        timed = done if getattr(benchmark, "disabled", False) else done[warmup:]
        figures = {"scenario": scenario.id, "group": scenario.group, "plan": scenario.describe(),
                   "batch_size": scenario.batch, "concurrency": scenario.concurrency,
                   "requests_per_round": scenario.requests, "warmup_rounds": warmup,
                   **length.as_dict(), **summarize(timed), **memory, **self.common(),
                   **engine_figures(gen)}
        benchmark.extra_info.update(figures)
        self.record(scenario.id, figures)
        return figures

    def run_soak(self, benchmark: Any, plan: soak.SoakPlan) -> dict[str, Any]:
        """The soak (embedgate.perf.soak): short single-input requests, never the same text twice,
        timed as one pytest-benchmark round; the verdict is in `soak_passed`/`soak_failures`."""
        length = self.lengths()["short"]
        benchmark.group = "soak"
        done: list[tuple[list[soak.Window], list[str], list[float]]] = []
        with self.loadgen() as gen:
            def request(i: int):
                return gen.prepare(self.texts(length.n_words, 1)[0])

            sampler = self.sampler().start()
            try:
                benchmark.pedantic(lambda: done.append(soak.run(gen, request, self.tree.rss,
                                                                plan)),
                                   rounds=1, warmup_rounds=0, iterations=1)
            finally:
                memory = sampler.stop()
        windows, errors, latencies = done[0]
        figures = {"scenario": "soak", "group": "soak", "plan": plan.describe(),
                   "concurrency": plan.concurrency, **length.as_dict(),
                   **latency_figures(latencies),
                   "throughput_rps": (windows[-1].done / windows[-1].elapsed_s
                                      if windows and windows[-1].elapsed_s else None),
                   **soak.judge(windows, errors, plan), **memory, **self.common()}
        if self.tree.root_pid is None:
            figures["memory_slope_null_reason"] = ("external server: the kit cannot read its "
                                                   "memory")
        benchmark.extra_info.update(figures)
        self.record("soak", figures)
        return figures

    def run_cold_start(self, benchmark: Any, *, cold: bool,
                       launch_more: Callable[[], list[dict[str, Any]]] | None = None,
                       ) -> dict[str, Any]:
        """The first request after ready (timed by pytest-benchmark), warm requests of the same
        shape for comparison, then any extra launches; with launch -> ready times."""
        text = self.stream.text(0, 12)
        benchmark.group = "startup"
        with self.loadgen() as gen:
            gen.warm_connections(1)  # TCP connect is not part of the cold request
            request = [gen.prepare(text)]
            first: list[LoadResult] = []
            sampler = self.sampler().start()
            try:
                benchmark.pedantic(lambda: first.append(gen.run(request, concurrency=1)),
                                   rounds=1, warmup_rounds=0, iterations=1)
                raise_on_errors(first[0], "the first request after ready")
                warm_texts = self.stream.texts(12, STARTUP_WARM_REQUESTS, first=1)
                warm = gen.run([gen.prepare(t) for t in warm_texts], concurrency=1)
                raise_on_errors(warm, "requests after the first")
            finally:
                memory = sampler.stop()
        extra = launch_more() if launch_more else []
        cold_s = [first[0].latencies_s[0]] + [e["first_request_s"] for e in extra]
        startups = [self.server.startup_s] + [e["startup_s"] for e in extra]
        startups = [s for s in startups if s]
        figures: dict[str, Any] = {
            "scenario": "startup", "group": "startup",
            "plan": f"session launch + {len(extra)} extra launch(es); first request after ready, "
                    f"then {STARTUP_WARM_REQUESTS} warm requests",
            "startup_s": self.server.startup_s if self.server.backend != "external" else None,
            "startup_s_all": startups, "startup_launches": 1 + len(extra),
            "cold_first_request_ms": cold_s[0] * 1e3, "cold_first_request_ms_all":
                _ms_list(cold_s), "cold": cold,
            **latency_figures(cold_s),
            **{k: v for k, v in round_figures([[c] for c in cold_s], cold_s, [1] * len(cold_s),
                                              [None] * len(cold_s)).items()
               if k.startswith("latency_") or k == "rounds"},
            **latency_figures(warm.latencies_s, "warm_after_cold"),
            **memory, **self.common(), "extra_launches": extra,
            "round_median_not_gated": "one cold sample per launch: percentiles of rounds are "
                                      "not gated on startup (a scoped rule can judge it)",
        }
        if self.server.backend == "external":
            figures["startup_s_null_reason"] = "external server: not launched by the kit"
        if not cold:
            figures["cold_note"] = ("the first request may not have been cold: the kit did not "
                                    "launch this server, or another test ran first")
        benchmark.extra_info.update(figures)
        self.record("startup", figures)
        return figures


def engine_figures(gen: Any) -> dict[str, Any]:
    """Which engine sent the load; for Locust, its own count and P50 of the last round."""
    if not isinstance(gen, LocustGenerator):
        return {"load_engine": "inprocess"}
    stats = gen.last_locust_stats or {}
    return {"load_engine": "locust", "locust_workers": gen.expect_workers,
            "locust_requests_last_round": stats.get("num_requests"),
            "locust_p50_ms_last_round": stats.get("p50_ms")}


def launch_and_probe(server: Any, *, text: str, interval_s: float, api_key: str | None = None,
                     gpu: NvmlProbe | None = None) -> dict[str, Any]:
    """Launch one more server (an EmbeddingServer, not started), time launch -> ready and its
    first request, sample its memory from the launch on, and stop it."""
    sampler = MemorySampler(ProcessTreeMemory(lambda: server.info.pid), interval_s=interval_s,
                            gpu=gpu).start()
    memory: dict[str, Any] | None = None
    try:
        with server as info:
            with LoadGenerator(info.base_url, info.served_name, api_key=api_key) as gen:
                gen.warm_connections(1)
                result = gen.run([gen.prepare(text)], concurrency=1)
            memory = sampler.stop()
        raise_on_errors(result, "the first request after an extra launch")
    finally:
        if memory is None:
            sampler.stop()
    return {"startup_s": info.startup_s, "first_request_s": result.latencies_s[0],
            "rss_at_ready_bytes": info.rss_at_ready_bytes,
            **{k: memory[k] for k in ("peak_rss_bytes", "peak_pss_bytes", "peak_memory_bytes",
                                      "peak_vram_process_bytes")}}


def missing_figures(figures: dict[str, Any]) -> list[str]:
    """What a scenario's figures lack (issue 5: P95 and peak memory for every scenario; a null
    figure always carries its reason)."""
    missing = [k for k in ("latency_p95_ms", "latency_p50_ms", "latency_p99_ms", "latency_max_ms")
               if figures.get(k) is None]
    if figures.get("peak_memory_bytes") is None and not figures.get("peak_memory_null_reason"):
        missing.append("peak_memory_bytes (null without a reason)")
    for key in ("peak_vram_device_bytes", "peak_vram_process_bytes"):
        if figures.get(key) is None and not (figures.get("vram_null_reason")
                                             or figures.get("vram_process_null_reason")):
            missing.append(f"{key} (null without a reason)")
    return missing
