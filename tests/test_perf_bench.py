"""`python -m embedgate.perf.bench` (issue 13): the kit's load generator as its own process, closed
or open loop, on an AIPerf single_turn JSONL, printing one JSON object of figures."""

import json
import subprocess
import sys

import pytest

from embedgate.perf.overhead import trivial_server


@pytest.fixture(scope="module")
def echo_url():
    with trivial_server(echo_max_tokens=64) as url:
        yield url


@pytest.fixture
def texts(tmp_path):
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": f"text number {i}"}) + "\n" for i in range(50)))
    return path


def bench(*args):
    done = subprocess.run([sys.executable, "-m", "embedgate.perf.bench", *args],
                          capture_output=True, text=True, timeout=120)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else done.stderr


def test_bench_closed_loop_prints_its_figures(echo_url, texts):
    rc, out = bench("--url", echo_url, "--model", "m", "--input", str(texts), "--requests", "80",
                    "--warmup", "10", "--concurrency", "4")
    assert rc == 0 and out["mode"] == "closed" and out["requests"] == 80 and out["errors"] == 0
    assert out["latency_p95_ms"] > 0 and out["throughput_rps"] > 0
    assert out["workload"]["workload_requests"] == 50


def test_bench_open_loop_exports_every_request(echo_url, texts, tmp_path):
    export = tmp_path / "rows.jsonl"
    rc, out = bench("--url", echo_url, "--model", "m", "--input", str(texts), "--requests", "60",
                    "--rate", "300", "--export", str(export))
    assert rc == 0 and out["mode"] == "open" and out["requests_answered"] == 60
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    assert len(rows) == 60 and all(r["sent_s"] >= r["scheduled_s"] for r in rows)


def test_bench_failing_requests_exit_nonzero(echo_url, tmp_path):
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"text": " ".join(["w"] * 100)}) + "\n")  # over --max-tokens 64
    rc, out = bench("--url", echo_url, "--model", "m", "--input", str(path), "--requests", "3",
                    "--concurrency", "1")
    assert rc == 1 and out["errors"] == 3 and "HTTP 400" in out["error_messages"][0]
