"""Distributed load on Locust (perf.locust_load): one master, two worker processes, loopback.

The agreement test runs the in-process generator and Locust on the same trivial server with a
fixed service time (one request at a time, 5 ms each), so a request's latency is set by the
offered load (the requests queued ahead of it), not by the client; both runs go through the perf
gate with the other as the baseline.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from embedgate.perf.loadgen import LoadGenerator, PreparedRequest
from embedgate.perf.locust_load import (LocustGenerator, histogram_percentile, master_command,
                                        merge_results, shares, worker_command, LOCUSTFILE)
from embedgate.perf.rules import evaluate, parse_rules
from embedgate.perf.runner import summarize
from embedgate.serve.lifecycle import free_port

LATENCY_SUITE = Path(__file__).resolve().parents[1] / "tests_perf" / "test_latency.py"

needs_locust = pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                                  reason="locust is not installed (pip install 'embedgate[scale]')")


@pytest.fixture
def trivial_server():
    """start(*flags) -> base URL of a trivial server, stopped after the test."""
    procs = []

    def start(*flags: str) -> str:
        port = free_port()
        procs.append(subprocess.Popen([sys.executable, "-m", "embedgate.perf.trivial_server",
                                       "--port", str(port), *flags]))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("trivial server did not start")
    yield start
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


def test_merge_puts_results_in_request_order_and_counts_the_missing_as_errors():
    requests = [PreparedRequest(b"{}", 1) for _ in range(5)]
    doc = {"workers": [
        {"results": [[0, 0.010, None, 3], [2, 0.030, None, 3], [4, 0.050, "request 4: HTTP 500",
                                                                 None]],
         "cpu_s": 0.5, "t_first": 100.0, "t_last": 101.5},
        {"results": [[1, 0.020, None, 3]], "cpu_s": 0.25, "t_first": 100.2, "t_last": 102.0}]}
    result = merge_results(doc, requests, wall_s=9.0)
    assert result.latencies_s[:4] == [0.010, 0.020, 0.030, 0.0]  # index 3 never came back
    assert result.n_errors == 2
    assert result.errors == ["request 4: HTTP 500", "1 requests came back from no worker"]
    assert result.tokens is None  # not every request was answered
    assert result.client_cpu_s == 0.75 and result.wall_s == pytest.approx(2.0)


def test_histogram_percentile_reads_locusts_rounded_ms_buckets():
    hist = {"10": 50, "20": 30, "100": 20}
    assert histogram_percentile(hist, 0.5) == 10.0
    assert histogram_percentile(hist, 0.51) == 20.0
    assert histogram_percentile(hist, 0.99) == 100.0
    assert histogram_percentile({}, 0.5) is None


def test_master_and_worker_commands_bind_where_told_and_never_carry_the_key(tmp_path):
    master = master_command(LOCUSTFILE, base_url="http://127.0.0.1:9", users=8,
                            bind_host="127.0.0.1", port=5557, expect_workers=3,
                            workload=tmp_path / "w.json", results=tmp_path / "r.json",
                            run_time_s=30)
    assert master[1:5] == ["-m", "locust", "-f", str(LOCUSTFILE)]
    assert {"--master", "--headless"} <= set(master)
    assert master[master.index("--master-bind-host") + 1] == "127.0.0.1"
    assert master[master.index("--expect-workers") + 1] == "3"
    assert master[master.index("--users") + 1] == "8"
    assert int(master[master.index("--spawn-rate") + 1]) >= 8
    worker = worker_command(LOCUSTFILE, master_host="10.0.0.5", port=5557)
    assert worker[worker.index("--master-host") + 1] == "10.0.0.5" and "--worker" in worker
    assert not any("key" in a.lower() for a in master + worker)


def test_locust_generator_refuses_a_run_without_workers():
    with pytest.raises(ValueError, match="at least one worker"):
        LocustGenerator("http://127.0.0.1:9", "m", local_workers=0)


@needs_locust
def test_locust_checks_every_answer_and_counts_the_wrong_ones(trivial_server):
    """Without --echo the trivial server answers one embedding whatever was sent: every
    two-input request is a wrong answer, and each one counts."""
    url = trivial_server()
    with LocustGenerator(url, "m", local_workers=2, timeout_s=20) as gen:
        requests = [gen.prepare(["a b", "c d"]) for _ in range(10)] + [gen.prepare("one")] * 6
        result = gen.run(requests, concurrency=2)
        stats = gen.last_locust_stats
    assert result.n_requests == 16 and result.n_errors == 10
    assert all("sent 2 inputs, got 1 embeddings back" in e for e in result.errors)
    assert stats["num_requests"] == 16 and stats["num_failures"] == 10


@needs_locust
def test_locust_two_workers_agree_with_the_in_process_generator_through_the_gate(
        trivial_server):
    url = trivial_server("--echo", "--service-ms", "5")
    rounds, per_round, concurrency = 3, 160, 4

    def plan(gen):
        return [[gen.prepare([f"text {k} {i} a b c"]) for i in range(per_round)]
                for k in range(rounds)]

    with LoadGenerator(url, "m") as gen:
        gen.warm_connections(concurrency)
        inproc = [gen.run(r, concurrency=concurrency) for r in plan(gen)]
    with LocustGenerator(url, "m", local_workers=2, timeout_s=30) as gen:
        distributed, locust_counts = [], []
        for r in plan(gen):
            distributed.append(gen.run(r, concurrency=concurrency))
            locust_counts.append(gen.last_locust_stats["num_requests"])
    for result in inproc + distributed:
        assert result.n_requests == per_round and result.n_errors == 0
        assert result.tokens is not None and result.tokens > 0  # every answer read
    assert locust_counts == [per_round] * rounds  # Locust's own statistics saw them all
    a, b = summarize(inproc), summarize(distributed)
    assert a["requests_timed"] == b["requests_timed"] == rounds * per_round
    ratio = b["latency_p50_ms"] / a["latency_p50_ms"]
    assert 0.9 <= ratio <= 1.1, f"Locust P50 {b['latency_p50_ms']:.2f} ms vs in-process " \
                                f"{a['latency_p50_ms']:.2f} ms"
    rules = parse_rules(["p50_ms:+10%", "p95_ms:+25%"])
    both_ways = [evaluate({"s": a}, {"s": b}, rules), evaluate({"s": b}, {"s": a}, rules)]
    for report in both_ways:
        assert report.ok, report.lines()
        assert {f.status for f in report.findings} == {"pass"}
    slower = {**b, "latency_p50_ms_round_median": b["latency_p50_ms_round_median"] * 1.2}
    assert not evaluate({"s": a}, {"s": slower}, rules).ok  # the same gate fails a slower run


def perf_suite(cwd, url: str, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDGATE_")}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", ".",
           str(LATENCY_SUITE), "-m", "perf", "-k", "short", "--embedgate-backend", "external",
           "--embedgate-server-url", url, "--embedgate-perf-rounds", "3", *extra]
    return subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, timeout=300)


@needs_locust
@pytest.mark.skipif(importlib.util.find_spec("pytest_benchmark") is None,
                    reason="needs pytest-benchmark")
def test_perf_suite_on_locust_writes_the_same_json_and_passes_the_same_gate(tmp_path,
                                                                            trivial_server):
    url = trivial_server("--echo", "--service-ms", "5", "--served-name", "all-MiniLM-L6-v2")
    first = perf_suite(tmp_path, url, "--benchmark-json=base.json")
    assert first.returncode == 0, first.stdout[-3000:]
    second = perf_suite(tmp_path, url, "--embedgate-perf-load-engine", "locust",
                        "--embedgate-perf-baseline=base.json", "--embedgate-perf-rule",
                        "p50_ms:+25%", "--benchmark-json=locust.json")
    assert second.returncode == 0, second.stdout[-3000:]
    assert "pass latency/short: p50_ms ok: baseline" in second.stdout
    base, loc = (json.loads((tmp_path / f).read_text())["benchmarks"][0]["extra_info"]
                 for f in ("base.json", "locust.json"))
    assert base["load_engine"] == "inprocess" and loc["load_engine"] == "locust"
    assert loc["locust_workers"] == 2
    assert loc["requests_timed"] == base["requests_timed"] > 0
    assert loc["locust_requests_last_round"] == loc["requests_per_round"]
    assert len(loc["latencies_ms_by_round"]) == 3



def test_shares_follow_the_users_locust_placed():
    split = shares(7, {"w-a": 2, "w-b": 1, "w-c": 0})
    assert split == {"w-a": [0, 1, 3, 4, 6], "w-b": [2, 5]}  # w-c has no user: nothing
    assert shares(1, {"w-a": 1, "w-b": 1}) == {"w-a": [0], "w-b": []}
