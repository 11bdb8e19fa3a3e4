"""The capacity scenario end to end on a server of known capacity (issue 13): the trivial server
serving one request at a time, 4 ms each, saturates at 250 req/s. The sweep must find the
saturation, never claim a sustainable rate above what the server can physically answer, export
every request, and compare open- and closed-loop P95 at the same throughput."""

import json

import psutil
import pytest

from embedgate.perf import capacity
from embedgate.perf.load_options import LoadOptions, Rates
from embedgate.perf.options import PerfOptions
from embedgate.perf.overhead import trivial_server
from embedgate.perf.runner import PerfSession
from embedgate.perf.slo import parse_slos
from embedgate.perf.workload import WordStream, synthetic_sentences
from embedgate.serve.lifecycle import ServerInfo
from tests.test_perf_nvml import FakeNVML
from tests.test_perf_runner import FakeBenchmark

SERVICE_MS = 4.0
CAPACITY = 1000 / SERVICE_MS


@pytest.fixture(scope="module")
def fifo_server():
    with trivial_server(echo_max_tokens=128, service_ms=SERVICE_MS) as url:
        child = next(c for c in psutil.Process().children()
                     if "embedgate.perf.trivial_server" in " ".join(c.cmdline()))
        yield ServerInfo(backend="hf", base_url=url, served_name="m", model="m", pid=child.pid,
                         startup_s=1.0, rss_at_ready_bytes=1, command=[])


def session_for(server, **load):
    load = {"perf_slo": parse_slos(["p95_ms<=40", "error_rate<=0"]), "perf_point_s": 0.5,
            "perf_searches": 2, "perf_metrics": "off", **load}
    options = PerfOptions(perf_sample_ms=20, load=LoadOptions(**load))
    recorded = {}
    s = PerfSession(server, max_tokens=128, options=options,
                    stream=WordStream(synthetic_sentences()), record=recorded.__setitem__,
                    nvml_module=FakeNVML(init_error="no NVML"))
    return s, recorded


def test_capacity_finds_the_saturation_of_a_fifo_server(fifo_server, tmp_path, monkeypatch):
    monkeypatch.setattr(capacity, "PROBE_REQUESTS", {1: 32, 4: 64, 16: 256, 64: 256})
    session, recorded = session_for(fifo_server)
    export = tmp_path / "requests.jsonl"
    try:
        fig = capacity.run(session, FakeBenchmark(), export_path=export,
                           record=recorded.__setitem__)
    finally:
        session.close()
    assert recorded[capacity.SCENARIO] is not None
    assert 0.7 * CAPACITY <= fig["closed_loop_capacity_rps"] <= 1.05 * CAPACITY
    assert fig["saturated"] and not fig["max_rate_is_lower_bound"]
    # never sustainable above what one-at-a-time service can answer
    assert 0 < fig["max_rate_rps_round_median"] <= 1.02 * CAPACITY
    top = max(fig["load_curve"], key=lambda p: p["offered_rps"])
    assert not top["sustainable"] and top["achieved_rps"] <= 1.05 * CAPACITY
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    assert len(rows) == sum(p["requests_scheduled"] for p in fig["load_curve"])
    assert {"scheduled_s", "sent_s", "latency_ms", "status", "tokens"} <= set(rows[0])
    co = fig["coordinated_omission"]
    assert co["closed_loop_p95_ms"] > 0 and co["open_loop_p95_ms"] > 0
    assert fig["rounds"] == 2 and len(fig["max_rate_rps_rounds"]) == 2


def test_capacity_same_options_send_the_same_requests_at_the_same_offsets(fifo_server):
    digests = []
    for _ in range(2):
        session, _ = session_for(fifo_server, perf_rates=Rates((40.0, 80.0), False),
                                 perf_searches=1)
        try:
            fig = capacity.run(session, FakeBenchmark())
        finally:
            session.close()
        digests.append([(p["offered_rps"], p["runs"][0]["schedule_sha256"],
                         p["runs"][0]["requests_sha256"])
                        for p in fig["load_curve"] if p["stage"] == "sweep"])
    assert digests[0] == digests[1] and len(digests[0]) == 2
