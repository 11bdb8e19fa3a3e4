"""The capacity gate on one vLLM CPU server, with and without 10 ms added by the fault proxy.

Launches the embedded default on vLLM with its model threads on CPU 0 and runs this script, the
proxy and the load generator on CPU 1, so that the server and the client do not share a core.
Then runs the capacity scenario (tests_perf/test_capacity.py) three times through the proxy:

1. baseline: `--fault none`, writes base.json;
2. the same server, `--fault none` again, gated against base.json: must pass;
3. the same server behind `--fault delay --param ms=10`, gated against base.json: must fail.

A delay is a pure latency shift (the proxy forwards requests concurrently), so it lowers the max
sustainable rate only through the SLO: the expected faulted max rate is about the highest
offered rate of the baseline's load curve whose P95 is at most SLO - delay. The script prints that
prediction beside what the faulted run measured. Usage (a few minutes):

    python scripts/capacity_gate_vllm.py --out reports/capacity-gate-vllm [--slo-ms 60] [--delay-ms 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from embedgate.api.proxy import FaultProxy
from embedgate.config.settings import resolve
from embedgate.models.profiles import load_profile
from embedgate.serve.launch import build_server

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "tests_perf" / "test_capacity.py"


def capacity(out: Path, url: str, slo_ms: float, rule: str, *extra: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDGATE_")}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(out),
           str(SUITE), "-m", "perf", "--embedgate-backend", "external",
           "--embedgate-server-url", url, "--embedgate-reports-dir", str(out / "reports"),
           "--embedgate-perf-slo", f"p95_ms<={slo_ms:g}", "--embedgate-perf-slo", "error_rate<=0",
           "--embedgate-perf-rule", rule, *extra]
    done = subprocess.run(cmd, cwd=out, env=env, text=True, capture_output=True, timeout=900)
    return done.returncode, done.stdout


def figures(path: Path) -> dict:
    return json.loads(path.read_text())["benchmarks"][0]["extra_info"]


def predicted_max_rate(curve: list[dict], slo_ms: float, delay_ms: float) -> float:
    """The highest offered rate of the baseline's curve that keeps up and still meets the SLO
    with the delay added to its P95 (a lower bound: the faulted search probes its own rates)."""
    ok = [p["offered_rps"] for p in curve
          if p.get("latency_p95_ms") is not None and p["latency_p95_ms"] + delay_ms <= slo_ms
          and p.get("sustainable")]
    return max(ok, default=0.0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "capacity-gate-vllm")
    ap.add_argument("--slo-ms", type=float, default=60.0)
    ap.add_argument("--delay-ms", type=float, default=10.0)
    ap.add_argument("--rule", default="capacity/*:max_rate_rps:-10%")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0")  # the model's threads on CPU 0
    settings = resolve({"backend": "vllm", "cache_dir": str(REPO / ".embedgate_cache"),
                        "reports_dir": str(a.out / "server")}, {}, {}, REPO)
    summary: dict = {"slo_ms": a.slo_ms, "delay_ms": a.delay_ms, "rule": a.rule}
    with build_server(settings, load_profile("all-minilm-l6-v2")) as info:
        os.sched_setaffinity(0, {1})  # this process, the proxy threads and the pytest runs
        runs = (("baseline", "none", "--benchmark-json=base.json"),
                ("same_server", "none", "--embedgate-perf-baseline=base.json",
                 "--benchmark-json=same.json"),
                ("delayed", "delay", "--embedgate-perf-baseline=base.json",
                 "--benchmark-json=delayed.json"))
        for name, fault, *extra in runs:
            params = {"ms": a.delay_ms} if fault == "delay" else {}
            with FaultProxy(info.base_url, fault, **params) as proxy:
                code, out = capacity(a.out, proxy.url, a.slo_ms, a.rule, *extra)
            (a.out / f"{name}.log").write_text(out)
            summary[name] = {"exit": code,
                             "gate": [ln for ln in out.splitlines() if "perf gate" in ln
                                      or "max_rate_rps" in ln or "max sustainable" in ln]}
            print(name, code, *summary[name]["gate"], sep="\n  ", flush=True)
    base = figures(a.out / "base.json")
    summary["baseline_figures"] = {k: base.get(k) for k in (
        "max_rate_rps_round_median", "max_rate_rps_rounds", "max_rate_rps_round_spread_pct",
        "closed_loop_capacity_rps")}
    summary["baseline_curve"] = [{k: p.get(k) for k in ("offered_rps", "achieved_rps",
                                                         "latency_p95_ms", "sustainable")}
                                 for p in base.get("load_curve", [])]
    summary["predicted_delayed_max_rate_rps"] = predicted_max_rate(base.get("load_curve", []),
                                                                   a.slo_ms, a.delay_ms)
    for name in ("same", "delayed"):
        path = a.out / f"{name}.json"
        if path.is_file():
            f = figures(path)
            summary[f"{name}_max_rate_rps_round_median"] = f.get("max_rate_rps_round_median")
            summary[f"{name}_max_rate_rps_rounds"] = f.get("max_rate_rps_rounds")
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    ok = (summary["baseline"]["exit"] == 0 and summary["same_server"]["exit"] == 0
          and summary["delayed"]["exit"] == 1)
    print("as expected" if ok else "NOT as expected: see the logs in", a.out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
