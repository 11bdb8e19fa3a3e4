#!/usr/bin/env python
"""The kit's load generator and AIPerf 0.13 side by side on one server, pinned apart.

    .venv/bin/python scripts/aiperf_side_by_side.py [--out reports/aiperf] [--rounds 2]

- AIPerf lives in its own venv (built here on first use: ``--aiperf-venv``, default
  ``.embedgate_cache/aiperf-venv``, ``pip install aiperf==0.13.0``); it is not a kit dependency.
- The server (vLLM on CPU, the embedded default, launched by the kit) runs on the last CPU(s),
  each client on CPU 0, both with ``taskset``; vLLM's OpenMP threads are bound to the server's
  CPUs (``VLLM_CPU_OMP_THREADS_BIND``).
- Both clients read the same JSONL of short texts (AIPerf's single_turn format: ``{"text": ...}``,
  ~16 tokens each, the kit's perf word stream) in file order, after the same warm-up.
- Workloads: one input per request at 1, 4, 16 and 64 in flight (closed loop), then Poisson
  arrivals at one rate below saturation (``--rate``, default half the kit's closed-loop rate at
  64 in flight). Each round runs every workload with both clients, the order alternating.
- A client's CPU per request is marginal: (CPU of its whole process tree for 2N requests minus
  for N requests) / N, from ``getrusage(RUSAGE_CHILDREN)``, so start-up costs cancel out and
  every process of a client (AIPerf has several) is counted.
- Latency is send to answer for both (AIPerf's ``request_latency``; the kit's closed-loop
  latency and open-loop ``service`` figures); open-loop schedule lag is shown beside it.

Writes ``side_by_side.json`` and ``side_by_side.md`` (ratios AIPerf / kit) into ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from embedgate.config.options import PathBase  # noqa: E402
from embedgate.config.settings import resolve  # noqa: E402
from embedgate.models.profiles import load_profile  # noqa: E402
from embedgate.perf.workload import default_stream  # noqa: E402
from embedgate.resources import datasets_dir  # noqa: E402
from embedgate.serve.launch import build_server  # noqa: E402

AIPERF_VERSION = "0.13.0"
CONCURRENCY = (1, 4, 16, 64)
REQUESTS = {1: 150, 4: 300, 16: 600, 64: 800}
WARMUP = 50
WORDS = 12          # ~16 tokens of all-MiniLM-L6-v2 per text (the kit's "short")
TEXTS = 6000


def ensure_aiperf(venv: Path) -> Path:
    exe = venv / "bin" / "aiperf"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"aiperf=={AIPERF_VERSION}"],
                       check=True)
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout
    if AIPERF_VERSION not in version:
        raise SystemExit(f"{exe} is AIPerf {version.strip()!r}, expected {AIPERF_VERSION}")
    return exe


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


SERVER_PID: list[int] = []


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its descendants (those alive now)."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
    except psutil.Error:
        pass
    return total


def timed(cmd: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float, float, float]:
    """(completed, CPU of the client's process tree, wall, CPU that processes other than the
    client and the server used meanwhile, in % of a core)."""
    cpu0, wall0 = children_cpu_s(), time.monotonic()
    server0 = sum(tree_cpu_s(p) for p in SERVER_PID)
    busy0 = sum(psutil.cpu_times()[:3])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}  # this checkout
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800, env=env)
    wall = time.monotonic() - wall0
    cpu = children_cpu_s() - cpu0
    server = sum(tree_cpu_s(p) for p in SERVER_PID) - server0
    foreign = max(0.0, (sum(psutil.cpu_times()[:3]) - busy0 - cpu - server) / wall * 100)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[:4]}... exited {done.returncode}:\n{done.stdout[-2000:]}\n"
                           f"{done.stderr[-3000:]}")
    return done, cpu, wall, foreign


def kit_run(url, model, texts, client_cpu, n, *, concurrency=None, rate=None, work=None):
    cmd = ["taskset", "-c", str(client_cpu), sys.executable, "-m", "embedgate.perf.bench",
           "--url", url, "--model", model, "--input", str(texts), "--requests", str(n),
           "--warmup", str(WARMUP)]
    cmd += ["--concurrency", str(concurrency)] if concurrency else ["--rate", str(rate)]
    done, cpu, wall, foreign = timed(cmd, work)
    out = json.loads(done.stdout)
    p50, p95 = ((out["latency_p50_ms"], out["latency_p95_ms"]) if concurrency else
                (out["service_p50_ms"], out["service_p95_ms"]))
    return {"p50_ms": p50, "p95_ms": p95, "throughput_rps": out["throughput_rps"],
            "cpu_s": cpu, "wall_s": wall, "foreign_cpu_pct": foreign,
            "inner_cpu_per_request_us": out["client_cpu_s"] / n * 1e6,
            "lag_p99_ms": out.get("schedule_lag_p99_ms"), "requests": n}


def aiperf_run(exe, url, model, texts, client_cpu, n, tokenizer, out_dir, *, concurrency=None,
               rate=None, work=None):
    cmd = ["taskset", "-c", str(client_cpu), str(exe), "profile", "--model", model,
           "--url", url, "--endpoint-type", "embeddings", "--input-file", str(texts),
           "--custom-dataset-type", "single_turn", "--dataset-sampling-strategy", "sequential",
           "--request-count", str(n), "--warmup-request-count", str(WARMUP),
           "--tokenizer", tokenizer, "--use-server-token-count", "--random-seed", "0",
           "--ui", "none", "--no-server-metrics", "--no-gpu-telemetry",
           "--output-artifact-dir", str(out_dir)]
    cmd += (["--concurrency", str(concurrency)] if concurrency else
            ["--request-rate", str(rate), "--arrival-pattern", "poisson"])
    done, cpu, wall, foreign = timed(cmd, work)
    doc = json.loads((out_dir / "profile_export_aiperf.json").read_text())
    lat = doc["request_latency"]
    lag = (doc.get("credit_to_start_latency") or {}).get("p99")
    return {"p50_ms": lat["p50"], "p95_ms": lat["p95"],
            "throughput_rps": doc["request_throughput"]["avg"], "cpu_s": cpu, "wall_s": wall,
            "foreign_cpu_pct": foreign, "lag_p99_ms": lag, "requests": n,
            "errors": (doc.get("request_error_rate") or {}).get("avg")}


def marginal(small: dict, large: dict) -> float:
    """CPU per request (us) of the requests the larger run added."""
    return (large["cpu_s"] - small["cpu_s"]) / (large["requests"] - small["requests"]) * 1e6


@contextlib.contextmanager
def pinned_server(cpus: list[int], cache: Path, reports: Path):
    """The embedded default on vLLM, its whole process tree on `cpus`."""
    before = os.sched_getaffinity(0)
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cpus))
    settings = resolve({"backend": "vllm", "cache_dir": str(cache),
                        "reports_dir": str(reports)}, {}, {}, PathBase(ROOT, ROOT))
    os.sched_setaffinity(0, set(cpus))  # inherited by the server's processes
    try:
        server = build_server(settings, load_profile("all-minilm-l6-v2"))
        with server as info:
            os.sched_setaffinity(0, before)
            yield info
    finally:
        os.sched_setaffinity(0, before)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "aiperf")
    parser.add_argument("--aiperf-venv", type=Path,
                        default=ROOT / ".embedgate_cache" / "aiperf-venv")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=None,
                        help="open-loop rate (default: half the kit's rate at 64 in flight)")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    exe = ensure_aiperf(args.aiperf_venv.resolve())
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("needs at least 2 CPUs: one for the clients, one for the server")
    client_cpu, server_cpus = cpus[0], cpus[len(cpus) // 2:] if len(cpus) > 2 else cpus[1:]
    stream = default_stream(datasets_dir() / "sts_en.tsv")
    texts = out / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n"
                             for t in stream.texts(WORDS, TEXTS, first=7_000_000)))
    tokenizer = str(Path(load_profile("all-minilm-l6-v2").local_model_path(out / "cache")))
    cpu_name = next((line.split(":", 1)[1].strip() for line in
                     Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "unknown")
    results: dict[str, dict[str, list[dict]]] = {}
    with pinned_server(server_cpus, out / "cache", out) as info:
        url, model = info.base_url, info.served_name
        SERVER_PID.append(info.pid)
        workloads = [(f"concurrency/{c}", {"concurrency": c}, REQUESTS[c]) for c in CONCURRENCY]
        rate = args.rate
        for r in range(args.rounds):
            order = ("kit", "aiperf") if r % 2 == 0 else ("aiperf", "kit")
            plan = list(workloads)
            if rate is not None and not any(w[0].startswith("open_loop/") for w in plan):
                workloads.append((f"open_loop/{rate:g}", {"rate": rate}, int(rate * 8)))
                plan.append(workloads[-1])
            for name, load, n in plan:
                for client in order:
                    runs = []
                    for k, size in enumerate((n, 2 * n)):
                        tag = f"{client}-{name.replace('/', '_')}-r{r}-{k}"
                        if client == "kit":
                            runs.append(kit_run(url, model, texts, client_cpu, size, work=out,
                                                **load))
                        else:
                            runs.append(aiperf_run(exe, url, model, texts, client_cpu, size,
                                                   tokenizer, out / tag, work=out, **load))
                    entry = {**runs[1], "cpu_per_request_us": marginal(*runs), "round": r}
                    results.setdefault(name, {}).setdefault(client, []).append(entry)
                    print(f"{name} {client} round {r}: P50 {entry['p50_ms']:.2f} ms, P95 "
                          f"{entry['p95_ms']:.2f} ms, {entry['throughput_rps']:.1f} req/s, "
                          f"{entry['cpu_per_request_us']:.0f} us CPU/request, other processes "
                          f"{entry['foreign_cpu_pct']:.0f}% of a core", flush=True)
                if rate is None and name == "concurrency/64":
                    rate = round(0.5 * results[name]["kit"][0]["throughput_rps"], 1)
                    workloads.append((f"open_loop/{rate:g}", {"rate": rate}, int(rate * 8)))
                    plan.append(workloads[-1])
    summary = summarize(results)
    doc = {"cpu": cpu_name, "cpus": len(cpus), "client_cpu": client_cpu,
           "server_cpus": server_cpus, "aiperf": AIPERF_VERSION, "rounds": args.rounds,
           "server": {"backend": info.backend, "version": info.version, "model": info.model},
           "summary": summary, "runs": results}
    (out / "side_by_side.json").write_text(json.dumps(doc, indent=1))
    (out / "side_by_side.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


def summarize(results):
    rows = {}
    for name, clients in results.items():
        row = {}
        for client, entries in clients.items():
            for key in ("p50_ms", "p95_ms", "throughput_rps", "cpu_per_request_us",
                        "foreign_cpu_pct", "lag_p99_ms"):
                values = [e[key] for e in entries if e.get(key) is not None]
                row[f"{client}_{key}"] = statistics.median(values) if values else None
        for key in ("p50_ms", "p95_ms", "throughput_rps"):
            kit, other = row.get(f"kit_{key}"), row.get(f"aiperf_{key}")
            row[f"ratio_{key}"] = other / kit if kit and other else None
        rows[name] = row
    return rows


def markdown(doc) -> str:
    head = ("| workload | P50 ms kit / AIPerf (ratio) | P95 ms kit / AIPerf (ratio) | req/s kit / "
            "AIPerf (ratio) | client CPU/request kit / AIPerf | lag P99 ms kit / AIPerf | "
            "other processes, % of a core |\n|---|---|---|---|---|---|---|\n")

    def cell(row, key, fmt):
        kit, other, ratio = row.get(f"kit_{key}"), row.get(f"aiperf_{key}"), row.get(
            f"ratio_{key}")
        shown = [format(v, fmt) if v is not None else "-" for v in (kit, other)]
        return f"{shown[0]} / {shown[1]}" + (f" ({ratio:.2f})" if ratio else "")

    lines = []
    for name, row in doc["summary"].items():
        cpu = " / ".join(f"{row.get(f'{c}_cpu_per_request_us'):.0f} us"
                         if row.get(f"{c}_cpu_per_request_us") is not None else "-"
                         for c in ("kit", "aiperf"))
        lag = " / ".join(f"{row.get(f'{c}_lag_p99_ms'):.2f}"
                         if row.get(f"{c}_lag_p99_ms") is not None else "-"
                         for c in ("kit", "aiperf"))
        load = " / ".join(f"{row.get(f'{c}_foreign_cpu_pct'):.0f}"
                          if row.get(f"{c}_foreign_cpu_pct") is not None else "-"
                          for c in ("kit", "aiperf"))
        lines.append(f"| {name} | {cell(row, 'p50_ms', '.2f')} | {cell(row, 'p95_ms', '.2f')} | "
                     f"{cell(row, 'throughput_rps', '.1f')} | {cpu} | {lag} | {load} |")
    return (f"CPU: {doc['cpu']} ({doc['cpus']} CPUs); client on CPU {doc['client_cpu']}, server "
            f"on CPU(s) {doc['server_cpus']}; AIPerf {doc['aiperf']}; {doc['rounds']} rounds "
            f"(medians), order alternating\n\n" + head + "\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
