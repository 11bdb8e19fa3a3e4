"""The scenario runner (issue 5): warm-ups untimed, fixed request counts per round, figures with
units in their names, the raw timings kept, and P95 + peak memory present for every scenario.
Runs against the trivial server in --echo mode with a stand-in for pytest-benchmark."""

import psutil
import pytest

from embedgate.perf.options import PerfOptions
from embedgate.perf.overhead import trivial_server
from embedgate.perf.runner import PerfSession, missing_figures
from embedgate.perf.scenarios import PLAN, Scenario
from embedgate.perf.workload import WordStream, synthetic_sentences
from embedgate.serve.lifecycle import ServerInfo
from tests.test_perf_nvml import FakeNVML


class FakeBenchmark:
    """pytest-benchmark's pedantic contract: setup before each call, warm-ups first."""

    def __init__(self, disabled=False):
        self.extra_info, self.group, self.disabled, self.calls = {}, None, disabled, 0

    def pedantic(self, target, args=(), kwargs=None, setup=None, rounds=1, warmup_rounds=0,
                 iterations=1):
        for _ in range(1 if self.disabled else warmup_rounds + rounds):
            a, k = setup() if setup else (args, kwargs or {})
            target(*a, **k)
            self.calls += 1


@pytest.fixture(scope="module")
def echo_server():
    with trivial_server(echo_max_tokens=128) as url:
        child = next(c for c in psutil.Process().children()
                     if "embedgate.perf.trivial_server" in " ".join(c.cmdline()))
        yield ServerInfo(backend="hf", base_url=url, served_name="m", model="m", pid=child.pid,
                         startup_s=1.5, rss_at_ready_bytes=123, command=[])


@pytest.fixture
def session(echo_server):
    recorded = {}
    s = PerfSession(echo_server, max_tokens=128, options=PerfOptions(perf_sample_ms=5),
                    stream=WordStream(synthetic_sentences()), record=recorded.__setitem__,
                    nvml_module=FakeNVML(init_error="NVML Shared Library Not Found"))
    s.recorded = recorded
    yield s
    s.close()


SMALL = Scenario("t/batch", "t", "short", batch=4, concurrency=2, requests=6, rounds=3,
                 warmup_rounds=1)


def test_scenario_times_only_the_rounds_after_warm_up(session):
    bench = FakeBenchmark()
    figures = session.run(bench, SMALL)
    assert bench.calls == 4 and bench.group == "t"
    assert figures["rounds"] == 3 and figures["requests_timed"] == 18
    assert figures["inputs_timed"] == 72
    assert [len(r) for r in figures["latencies_ms_by_round"]] == [6, 6, 6]
    assert bench.extra_info == figures == session.recorded["t/batch"]


def test_scenario_figures_have_units_in_names_and_nothing_missing(session):
    figures = session.run(FakeBenchmark(), SMALL)
    assert missing_figures(figures) == []
    for key in ("latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
                "latency_max_ms", "latency_p95_ms_round_median", "throughput_rps",
                "tokens_per_s", "peak_rss_bytes", "peak_pss_bytes", "peak_memory_bytes",
                "client_cpu_per_request_us", "rss_at_ready_bytes"):
        assert isinstance(figures[key], (int, float)), key
    assert figures["tokens_per_s"] > 0 and figures["input_mean_tokens"] <= 16
    assert figures["peak_vram_process_bytes"] is None
    assert "NVML Shared Library Not Found" in figures["vram_null_reason"]
    assert figures["server_memory_fraction"] is None  # hf: no reservation, with a note
    assert figures["memory_timeline"]["rss_bytes"]


def test_every_request_carries_a_different_text(session):
    seen = []
    original = session.texts
    session.texts = lambda n, count: seen.extend(original(n, count)) or seen[-count:]
    session.run(FakeBenchmark(), SMALL)
    assert len(seen) == len(set(seen)) == 4 * 6 * 4


def test_disabled_benchmark_still_yields_figures(session):
    figures = session.run(FakeBenchmark(disabled=True), SMALL)
    assert figures["rounds"] == 1 and missing_figures(figures) == []


def test_rounds_option_overrides_the_plan(echo_server):
    s = PerfSession(echo_server, max_tokens=128, options=PerfOptions(perf_rounds=2),
                    stream=WordStream(synthetic_sentences()), record=lambda *a: None,
                    nvml_module=FakeNVML(init_error="x"))
    assert s.run(FakeBenchmark(), SMALL)["rounds"] == 2


def test_cold_start_records_startup_and_the_first_request(session):
    figures = session.run_cold_start(FakeBenchmark(), cold=True)
    assert figures["startup_s"] == 1.5 and figures["cold"] is True
    assert figures["cold_first_request_ms"] > 0 and figures["rounds"] == 1
    assert figures["warm_after_cold_p95_ms"] > 0
    assert missing_figures(figures) == []


def test_cold_start_on_a_server_seen_before_says_so(session):
    figures = session.run_cold_start(FakeBenchmark(), cold=False)
    assert "may not have been cold" in figures["cold_note"]


def test_plan_covers_the_issue_scenarios():
    # Issue 5: short/medium/long latency, batch 1/8/32/128, concurrency 1/4/16/64.
    assert sorted(PLAN) == sorted(
        ["latency/short", "latency/medium", "latency/long", "batch/1", "batch/8", "batch/32",
         "batch/128", "concurrency/1", "concurrency/4", "concurrency/16", "concurrency/64"])
    assert len({s.requests for s in PLAN.values() if s.group == "concurrency"}) == 1
    assert all(s.rounds >= 5 and s.warmup_rounds >= 1 for s in PLAN.values())
