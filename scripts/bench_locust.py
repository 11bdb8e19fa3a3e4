"""The in-process generator and Locust (master + W local workers) on the same server and load.

Starts the trivial server with a fixed service time (one request at a time), sends --rounds x
--requests single-input requests at --concurrency with each engine, and prints P50/P95, the
request and error counts, throughput and the client's CPU per request, and the perf gate's
verdict of each against the other (p50_ms:+10%). Usage:

    python scripts/bench_locust.py [--service-ms 5] [--concurrency 4] [--requests 200]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import httpx

from embedgate.perf.loadgen import LoadGenerator
from embedgate.perf.locust_load import LocustGenerator
from embedgate.perf.rules import evaluate, parse_rules
from embedgate.perf.runner import summarize
from embedgate.serve.lifecycle import free_port


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--service-ms", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--requests", type=int, default=200, help="per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "embedgate.perf.trivial_server", "--port",
                               str(port), "--echo", "--service-ms", str(a.service_ms)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        figures = {}
        for name, engine in (("inprocess", LoadGenerator(url, "m")),
                             ("locust", LocustGenerator(url, "m", local_workers=a.workers))):
            with engine as gen:
                plans = [[gen.prepare(f"text {k} {i} a b c") for i in range(a.requests)]
                         for k in range(a.rounds)]
                results = [gen.run(p, concurrency=a.concurrency) for p in plans]
            f = figures[name] = summarize(results)
            errors = sum(r.n_errors for r in results)
            print(f"{name:10s} P50 {f['latency_p50_ms']:7.2f} ms  P95 {f['latency_p95_ms']:7.2f} ms"
                  f"  requests {f['requests_timed']}  errors {errors}  "
                  f"{f['throughput_rps']:7.1f} req/s  client CPU "
                  f"{f['client_cpu_per_request_us']:6.0f} us/request")
        ratio = figures["locust"]["latency_p50_ms"] / figures["inprocess"]["latency_p50_ms"]
        print(f"Locust/in-process P50 ratio {ratio:.3f}")
        rules = parse_rules(["p50_ms:+10%"])
        for base, cur in (("inprocess", "locust"), ("locust", "inprocess")):
            report = evaluate({"s": figures[base]}, {"s": figures[cur]}, rules)
            print(f"gate, {cur} against {base} as baseline: {'pass' if report.ok else 'FAIL'}")
    finally:
        server.kill()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
