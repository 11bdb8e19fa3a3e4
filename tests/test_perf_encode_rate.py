"""Encode-rate comparison (issue 3): reference and kit alternate, the ratio of median rates is
reported, the server is paused (and always resumed) while the reference runs."""

import signal
import subprocess
import sys
import time
import types

import httpx
import numpy as np
import psutil
import pytest

from embedgate.perf import encode_rate

from embedgate.perf.encode_rate import (TimingTransport, compare, paused,
                                        timed_kit_client)
from embedgate.perf.overhead import trivial_server
from embedgate.serve.client import DEFAULT_BATCH_SIZE
from tests.test_perf_runner import FakeBenchmark


class FakeClock:
    """encode_rate's perf_counter, advanced by the fake encoders: timings exact, machine idle
    or not."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def spend(self, seconds):
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(encode_rate, "time", types.SimpleNamespace(
        perf_counter=fake.perf_counter, monotonic=time.monotonic, sleep=time.sleep))
    return fake


def test_compare_alternates_and_reports_the_ratio_of_median_rates(clock):
    order = []

    def reference(texts):
        order.append("ref")
        clock.spend(0.02)
        return np.ones((len(texts), 3))

    def kit(texts):
        order.append("kit")
        clock.spend(0.04)
        return np.ones((len(texts), 3))

    figures = compare(FakeBenchmark(), kit=kit, reference=reference, sentences=["a"] * 10,
                      rounds=3, warmup_rounds=1)
    assert order == ["ref", "kit"] * 4
    assert figures["rounds"] == 3 and len(figures["kit_sentences_per_s_rounds"]) == 3
    assert figures["encode_rate_ratio"] == pytest.approx(0.5)
    assert figures["encode_rate_ratio_median"] == pytest.approx(0.5)
    assert len(figures["reference_foreign_cpu_pct_rounds"]) == 3
    assert figures["min_cosine_kit_vs_reference"] > 0.999


def test_ratio_compares_best_rounds_so_one_contended_reference_round_cannot_flatter_the_kit(
        clock):
    ref_times = iter([0.01, 0.50, 0.50, 0.01])  # warm-up, two contended rounds, one clean

    def reference(texts):
        clock.spend(next(ref_times))
        return np.ones((len(texts), 3))

    def kit(texts):
        clock.spend(0.02)
        return np.ones((len(texts), 3))

    figures = compare(FakeBenchmark(), kit=kit, reference=reference, sentences=["a"] * 10,
                      rounds=3, warmup_rounds=1)
    assert figures["encode_rate_ratio"] == pytest.approx(0.5)         # clean rounds: 2x slower
    assert figures["encode_rate_ratio_median"] == pytest.approx(25.0)  # medians: 25x faster


def test_after_each_pause_one_untimed_request_wakes_the_server_before_the_kits_round(clock):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    calls = []

    def reference(texts):
        assert psutil.Process(proc.pid).status() == psutil.STATUS_STOPPED
        clock.spend(0.02)
        return np.ones((len(texts), 3))

    def kit(texts):
        assert psutil.Process(proc.pid).status() != psutil.STATUS_STOPPED
        calls.append(len(texts))
        clock.spend(0.04 if len(texts) > 1 else 5.0)  # a slow wake must not count
        return np.ones((len(texts), 3))

    try:
        figures = compare(FakeBenchmark(), kit=kit, reference=reference, sentences=["a"] * 10,
                          rounds=2, warmup_rounds=1, server_pids=[proc.pid])
    finally:
        proc.kill()
        proc.wait()
    assert calls == [1, 10] * 3
    assert figures["kit_sentences_per_s_rounds"] == pytest.approx([250.0, 250.0])
    assert figures["encode_rate_ratio"] == pytest.approx(0.5)


def test_paused_stops_the_server_and_always_resumes_it():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        try:
            with paused([proc.pid]):
                assert psutil.Process(proc.pid).status() == psutil.STATUS_STOPPED
                raise RuntimeError("reference crashed")
        except RuntimeError:
            pass
        assert psutil.Process(proc.pid).status() != psutil.STATUS_STOPPED
    finally:
        proc.kill()
        proc.wait()


def test_paused_server_is_resumed_even_if_the_kit_is_killed():
    """A stopped server ignores the parent-death SIGTERM: the watchdog must resume it."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    kit = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom embedgate.perf.encode_rate import paused\n"
        f"with paused([{sleeper.pid}]):\n    print('paused', flush=True)\n    time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert kit.stdout.readline().strip() == "paused"
        assert psutil.Process(sleeper.pid).status() == psutil.STATUS_STOPPED
        kit.send_signal(signal.SIGKILL)
        kit.wait()
        deadline = time.monotonic() + 5
        while psutil.Process(sleeper.pid).status() == psutil.STATUS_STOPPED:
            assert time.monotonic() < deadline, "the server stayed stopped"
            time.sleep(0.05)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_timing_transport_times_each_request_to_its_last_byte():
    with trivial_server(echo_max_tokens=64) as url:
        client, transport = timed_kit_client(url, "m", api_key=None)
        with client:
            out = client.embed([f"text {i}" for i in range(70)])
    assert out.shape == (70, 2)
    batches = -(-70 // DEFAULT_BATCH_SIZE)
    assert len(transport.latencies_s) == batches and all(t > 0 for t in transport.latencies_s)


def test_timed_kit_client_takes_the_quality_runs_batch_size_and_concurrency():
    with trivial_server(echo_max_tokens=64) as url:
        client, transport = timed_kit_client(url, "m", api_key=None, batch_size=16, concurrency=2)
        with client:
            out = client.embed([f"text {i}" for i in range(70)])
    assert out.shape == (70, 2) and (client.batch_size, client.concurrency) == (16, 2)
    assert len(transport.latencies_s) == 5  # ceil(70 / 16)


def test_timing_transport_is_an_httpx_transport():
    assert isinstance(TimingTransport(httpx.HTTPTransport()), httpx.BaseTransport)
