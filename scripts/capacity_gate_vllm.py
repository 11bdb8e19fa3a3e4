"""The capacity gate on one vLLM CPU server, with and without 10 ms added by the fault proxy.

Launches the embedded default on vLLM with all its processes (API server, EngineCore, the model's
worker) on CPU 0 and runs this script, the proxy and the load generator on CPU 1, so that the
server and the client never share a core. (Binding only the worker's threads to CPU 0 left the API
server and EngineCore free to run beside the client: neighbouring rates' P95 then jumped between
43 and 811 ms.) Then runs the capacity scenario (tests_perf/test_capacity.py) through the proxy:

1. baseline: `--fault none`, writes base.json;
2. the same server, `--fault none` again, gated against base.json: must pass;
3. the same server behind `--fault delay --param ms=10`, gated against base.json: must fail;
4. `--repeats N` repeats 2 and 3 (alternating), so the spread of both is measured, not assumed.

A delay is a pure latency shift (the proxy forwards requests concurrently), so it lowers the max
sustainable rate only through the SLO: the expected faulted max rate is where the baseline's
load curve (P95 against offered rate, interpolated) reaches SLO - delay. The script prints that
prediction beside what the faulted runs measured. The offered rates are a fixed list around the
knee (not percentages of the closed-loop capacity, which moves between runs), so every run probes
the same rates. Usage (about 2 minutes per run):

    python scripts/capacity_gate_vllm.py --out reports/capacity-gate-vllm [--slo-ms 50] [--delay-ms 10]
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


def capacity(out: Path, url: str, slo_ms: float, rule: str, *extra: str,
             timeout_s: float = 900) -> subprocess.CompletedProcess:
    """The capacity suite against `url` in a fresh pytest run in `out` (also what
    tests/test_perf_capacity_e2e.py runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDGATE_")}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(out),
           str(SUITE), "-m", "perf", "--embedgate-backend", "external",
           "--embedgate-server-url", url, "--embedgate-reports-dir", str(out / "reports"),
           "--embedgate-perf-slo", f"p95_ms<={slo_ms:g}", "--embedgate-perf-slo", "error_rate<=0",
           "--embedgate-perf-rule", rule, *extra]
    return subprocess.run(cmd, cwd=out, env=env, text=True, capture_output=True,
                          timeout=timeout_s)


def figures(path: Path) -> dict:
    return json.loads(path.read_text())["benchmarks"][0]["extra_info"]


def predicted_max_rate(curve: list[dict], slo_ms: float, delay_ms: float) -> float:
    """The highest sustainable offered rate of the baseline's curve whose P95 plus the delay
    still meets the SLO, interpolated towards the next point up (where it no longer does); 0 when
    no point does. A measured curve is not monotone below the knee, so the first crossing of
    SLO - delay would undershoot: the search, too, looks for the highest rate that holds."""
    points = sorted((p["offered_rps"], p["latency_p95_ms"]) for p in curve
                    if p.get("latency_p95_ms") is not None and p.get("sustainable"))
    bound = slo_ms - delay_ms
    under = [k for k, (_, p95) in enumerate(points) if p95 <= bound]
    if not under:
        return 0.0
    k = under[-1]
    if k + 1 == len(points):
        return points[k][0]
    (r0, p0), (r1, p1) = points[k], points[k + 1]
    return r0 + (r1 - r0) * (bound - p0) / (p1 - p0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "capacity-gate-vllm")
    ap.add_argument("--slo-ms", type=float, default=50.0)
    ap.add_argument("--delay-ms", type=float, default=10.0)
    ap.add_argument("--rule", default="capacity/*:max_rate_rps:-10%")
    ap.add_argument("--rates", default="40,50,60,70,80,90,100,110,120,140",
                    help="offered rates of every run's sweep (req/s)")
    ap.add_argument("--point-s", default="4", help="seconds of schedule per offered rate")
    ap.add_argument("--searches", default="3", help="max-rate searches per run (the gate needs 3)")
    ap.add_argument("--repeats", type=int, default=1, help="same-server and delayed runs each")
    a = ap.parse_args()
    load = ("--embedgate-perf-rates", a.rates, "--embedgate-perf-point-s", a.point_s,
            "--embedgate-perf-searches", a.searches)
    a.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0")  # the model's threads on CPU 0
    settings = resolve({"backend": "vllm", "cache_dir": str(REPO / ".embedgate_cache"),
                        "reports_dir": str(a.out / "server")}, {}, {}, REPO)
    summary: dict = {"slo_ms": a.slo_ms, "delay_ms": a.delay_ms, "rule": a.rule}
    runs = [("baseline", "none", "base.json")]  # name, fault, JSON; all but the first gated
    for k in range(1, a.repeats + 1):
        tag = "" if k == 1 else f"_{k}"
        runs += [(f"same_server{tag}", "none", f"same{tag}.json"),
                 (f"delayed{tag}", "delay", f"delayed{tag}.json")]
    client_cpus = os.sched_getaffinity(0) - {0} or os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})  # the server's processes inherit CPU 0 at launch
    with build_server(settings, load_profile("all-minilm-l6-v2")) as info:
        os.sched_setaffinity(0, client_cpus)  # this process, the proxy threads and pytest runs
        for name, fault, json_name in runs:
            params = {"ms": a.delay_ms} if fault == "delay" else {}
            gated = () if json_name == "base.json" else ("--embedgate-perf-baseline=base.json",)
            with FaultProxy(info.base_url, fault, **params) as proxy:
                done = capacity(a.out, proxy.url, a.slo_ms, a.rule, *load, *gated,
                                f"--benchmark-json={json_name}")
            (a.out / f"{name}.log").write_text(done.stdout)
            summary[name] = {"exit": done.returncode,
                             "gate": [ln for ln in done.stdout.splitlines() if "perf gate" in ln
                                      or "max_rate_rps" in ln or "max sustainable" in ln]}
            print(name, done.returncode, *summary[name]["gate"], sep="\n  ", flush=True)
    base = figures(a.out / "base.json")
    summary["baseline_figures"] = {k: base.get(k) for k in (
        "max_rate_rps_round_median", "max_rate_rps_rounds", "max_rate_rps_round_spread_pct",
        "closed_loop_capacity_rps")}
    summary["baseline_curve"] = [{k: p.get(k) for k in ("offered_rps", "achieved_rps",
                                                         "latency_p95_ms", "sustainable")}
                                 for p in base.get("load_curve", [])]
    summary["predicted_delayed_max_rate_rps"] = predicted_max_rate(base.get("load_curve", []),
                                                                   a.slo_ms, a.delay_ms)
    for name, _, json_name in runs[1:]:
        path = a.out / json_name
        if path.is_file():
            f = figures(path)
            summary[f"{name}_max_rate_rps_round_median"] = f.get("max_rate_rps_round_median")
            summary[f"{name}_max_rate_rps_rounds"] = f.get("max_rate_rps_rounds")
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    ok = summary["baseline"]["exit"] == 0 and all(
        summary[name]["exit"] == (1 if fault == "delay" else 0) for name, fault, _ in runs[1:])
    print("as expected" if ok else "NOT as expected: see the logs in", a.out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
