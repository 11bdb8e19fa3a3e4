"""The capacity gate end to end (issue 13, "What it must show" 2, on a server of known
capacity): the real capacity scenario through pytest against the trivial server serving one
request at a time. A server with half the capacity (20 ms per request instead of 10) fails
``max_rate_rps`` against the first run's baseline; the same server as the baseline passes.

The rule is loosened to -25% so the test checks the mechanism and cannot flap on a busy machine
(half the capacity is -50%); the default -10% is measured on vLLM in the README.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from embedgate.perf.overhead import trivial_server

REPO = Path(__file__).resolve().parents[1]
SERVED = "all-MiniLM-L6-v2"  # the default profile's served name


def _gate_script():
    """scripts/capacity_gate_vllm.py, which runs the capacity suite the same way on vLLM."""
    spec = importlib.util.spec_from_file_location(
        "capacity_gate_vllm", REPO / "scripts" / "capacity_gate_vllm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GATE = _gate_script()

pytestmark = pytest.mark.skipif(
    __import__("importlib").util.find_spec("pytest_benchmark") is None,
    reason="needs pytest-benchmark")


def capacity_run(cwd: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    return GATE.capacity(cwd, url, 150, "capacity/*:max_rate_rps:-25%",
                         "--embedgate-startup-timeout", "30", "--embedgate-perf-point-s", "0.5",
                         "--embedgate-perf-metrics", "off", *extra, timeout_s=300)


def test_the_delays_expected_max_rate_is_the_highest_rate_that_still_holds_with_it():
    point = lambda rate, p95, ok=True: {"offered_rps": rate, "latency_p95_ms": p95,
                                        "sustainable": ok}
    curve = [point(40, 38), point(50, 44), point(60, 40), point(70, 37.5), point(80, 46),
             point(90, 49.5), point(100, 56, ok=False)]
    # SLO 50 less 10 ms: 70 req/s is the highest rate at or under 40 ms, 80 the next one up
    assert GATE.predicted_max_rate(curve, 50, 10) == pytest.approx(70 + 10 * 2.5 / 8.5)
    assert GATE.predicted_max_rate(curve, 60, 10) == 90  # every sustainable point holds
    assert GATE.predicted_max_rate(curve, 45, 10) == 0.0  # none does


def test_capacity_gate_fails_half_the_capacity_and_passes_the_same_server(tmp_path):
    with trivial_server(echo_max_tokens=256, service_ms=10.0, served_name=SERVED) as url:
        first = capacity_run(tmp_path, url, "--benchmark-json=base.json")
        assert first.returncode == 0, first.stdout[-3000:]
        doc = json.loads((tmp_path / "base.json").read_text())
        figures = doc["benchmarks"][0]["extra_info"]
        assert figures["scenario"] == "capacity/open_loop" and figures["saturated"]
        assert 0 < figures["max_rate_rps_round_median"] <= 102  # 100 req/s is the ceiling
        assert "capacity/open_loop: max sustainable rate" in first.stdout
        assert (tmp_path / "reports" / "perf-requests.jsonl").is_file()

        same = capacity_run(tmp_path, url, "--embedgate-perf-baseline=base.json")
        assert same.returncode == 0, same.stdout[-3000:]
        assert "perf gate: 0 failed, 1 passed" in same.stdout

    with trivial_server(echo_max_tokens=256, service_ms=20.0, served_name=SERVED) as url:
        half = capacity_run(tmp_path, url, "--embedgate-perf-baseline=base.json")
    assert half.returncode == 1, half.stdout[-3000:]
    assert "FAIL capacity/open_loop: max_rate_rps FAILED: baseline " in half.stdout
