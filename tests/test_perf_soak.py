"""The soak scenario (embedgate.perf.soak): its verdict on memory growth and errors, its time cap,
and a real run against a server that leaks and one that does not.

The verdict and the cap are checked on fixed figures and a fake clock; the real runs use the
trivial stand-in server, whose `--leak-bytes` keeps memory per request as a leaking server does.
"""

from __future__ import annotations

import numpy as np
import psutil
import pytest

from embedgate.perf import soak
from embedgate.perf.loadgen import LoadGenerator, LoadResult
from embedgate.perf.memory import ProcessTreeMemory
from embedgate.perf.overhead import trivial_server
from embedgate.perf.soak import SoakPlan, Window

MIB = 2**20
PLAN = SoakPlan(requests=4000, window=100, max_growth_per_1k=MIB)


def windows(rss_of, errors_at=()):
    return [Window(done=100 * (k + 1), rss_bytes=rss_of(k), errors=int(k in errors_at),
                   elapsed_s=float(k)) for k in range(40)]


def noise(k: int) -> int:
    return int(np.random.default_rng(k).integers(-64 * 1024, 64 * 1024))


def test_soak_flat_memory_and_no_errors_pass():
    got = soak.judge(windows(lambda k: 900 * MIB + noise(k)), [], PLAN)
    assert got["soak_passed"] and got["soak_failures"] == []
    assert got["memory_slope_windows"] == 30  # the warm-up quarter is not judged
    low, high = got["memory_slope_ci"]
    assert low < got["memory_slope_bytes_per_1k"] < high < MIB


def test_soak_warm_up_growth_is_not_judged():
    # 200 MiB gained over the first 10 windows (caches, allocator arenas), flat afterwards.
    got = soak.judge(windows(lambda k: 700 * MIB + min(k, 10) * 20 * MIB + noise(k)), [], PLAN)
    assert got["soak_passed"], got["soak_failures"]


def test_soak_steady_growth_fails_with_slope_and_ci():
    # 8 KiB per request: 8,000 KiB per 1,000 requests.
    got = soak.judge(windows(lambda k: 900 * MIB + k * 800 * 1024 + noise(k)), [], PLAN)
    assert not got["soak_passed"]
    assert got["memory_slope_bytes_per_1k"] == pytest.approx(8000 * 1024, rel=0.01)
    assert got["soak_failures"] == [
        f"the server's memory grows by {got['memory_slope_bytes_per_1k'] / 1024:,.0f} KiB per 1,000 requests (95% CI "
        f"{got['memory_slope_ci'][0] / 1024:,.0f} KiB to {got['memory_slope_ci'][1] / 1024:,.0f}"
        f" KiB), above the 1,024 KiB allowed"]


def test_soak_too_noisy_to_tell_fails_closed():
    wild = lambda k: 900 * MIB + int(np.random.default_rng(k).integers(-50, 50)) * MIB  # noqa: E731
    got = soak.judge(windows(wild), [], PLAN)
    assert not got["soak_passed"]
    assert got["soak_failures"][0].startswith("memory growth not shown to stay within 1,024 KiB")


def test_soak_errors_fail_and_name_the_first_window():
    got = soak.judge(windows(lambda k: 900 * MIB, errors_at=(12, 30)),
                     ["request 7: HTTP 503: busy"], PLAN)
    assert not got["soak_passed"] and got["soak_errors"] == 2
    assert got["soak_failures"] == ["2 of 4000 requests failed, the first in window 13 "
                                    "(requests 1201-1300): request 7: HTTP 503: busy"]


def test_soak_without_memory_readings_is_not_passed():
    got = soak.judge(windows(lambda k: None), [], PLAN)
    assert not got["soak_passed"] and got["memory_slope_bytes_per_1k"] is None
    assert "memory growth not judged: 0 judged windows" in got["soak_failures"][0]


class FakeGen:
    def __init__(self, clock, seconds_per_window):
        self.clock, self.step, self.sent = clock, seconds_per_window, 0

    def warm_connections(self, count):
        pass

    def run(self, requests, *, concurrency):
        self.sent += len(requests)
        self.clock.now += self.step
        return LoadResult([0.001] * len(requests), self.step, len(requests), None, 0.0)


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_soak_stops_at_the_time_cap_and_says_so():
    clock = Clock()
    gen = FakeGen(clock, seconds_per_window=10.0)
    plan = SoakPlan(requests=4000, window=100, time_cap_s=120.0)
    got_windows, errors, latencies = soak.run(gen, lambda i: i, lambda: MIB, plan, clock=clock)
    assert gen.sent == 1200 and len(got_windows) == 12 and len(latencies) == 1200
    figures = soak.judge(got_windows, errors, plan)
    assert figures["soak_capped"] and figures["soak_requests_done"] == 1200


def test_soak_plan_refuses_too_few_windows_to_judge():
    with pytest.raises(ValueError, match="fewer than 8 judged windows"):
        SoakPlan(requests=500, window=100)


def soak_against(leak_bytes: int) -> dict:
    with trivial_server(echo_max_tokens=64, leak_bytes=leak_bytes) as url:
        port = url.rsplit(":", 1)[1]
        server = next(c for c in psutil.Process().children()
                      if "trivial_server" in " ".join(c.cmdline()) and port in c.cmdline())
        tree = ProcessTreeMemory(server.pid)
        plan = SoakPlan(requests=3000, window=100, concurrency=4, max_growth_per_1k=MIB)
        with LoadGenerator(url, "m") as gen:
            return soak.judge(*soak.run(gen, lambda i: gen.prepare(f"text number {i}"),
                                        tree.rss, plan)[:2], plan)


def test_soak_fails_a_server_that_leaks_64_kib_per_request():
    got = soak_against(64 * 1024)
    assert not got["soak_passed"] and got["soak_errors"] == 0
    assert got["memory_slope_bytes_per_1k"] == pytest.approx(64 * MIB, rel=0.2)
    assert got["soak_failures"][0].startswith("the server's memory grows by")


def test_soak_passes_the_same_server_without_the_leak():
    got = soak_against(0)
    assert got["soak_passed"], got["soak_failures"]
    assert got["soak_requests_done"] == 3000 and got["soak_errors"] == 0
