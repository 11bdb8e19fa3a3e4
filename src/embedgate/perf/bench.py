"""``python -m embedgate.perf.bench``: the kit's load generator from the command line.

Closed loop (``--concurrency C``) or open loop (``--rate R``, Poisson, constant or gamma
arrivals) against any OpenAI-compatible embeddings URL, with texts or requests from a file (the
formats of `traffic`: AIPerf's single_turn JSONL reads as it is). It prints one JSON object:
P50/P90/P95/P99 latency, throughput, errors, and for open loops the schedule lag; with
``--export`` one JSON line per request. Used by scripts/aiperf_side_by_side.py to run the kit's
client as its own process, the way AIPerf runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Sequence

from embedgate.perf import openloop
from embedgate.perf.arrivals import parse_arrivals
from embedgate.perf.openloop import OpenLoopGenerator, run_processes
from embedgate.perf.stats import latency_figures
from embedgate.perf.traffic import from_file


def closed(gen: OpenLoopGenerator, requests, concurrency: int, warmup) -> dict[str, Any]:
    if warmup:
        gen.run(warmup, concurrency=concurrency)
    result = gen.run(requests, concurrency=concurrency)
    return {"mode": "closed", "concurrency": concurrency, "requests": result.n_requests,
            "errors": result.n_errors, "error_messages": result.errors,
            "throughput_rps": result.n_requests / result.wall_s, "wall_s": result.wall_s,
            "client_cpu_s": result.client_cpu_s, **latency_figures(result.latencies_s)}


def open_loop(gen: OpenLoopGenerator, requests, args, warmup, api_key: str | None):
    arrivals = parse_arrivals(args.arrivals, rate_rps=args.rate, seed=args.seed)
    if warmup:
        gen.run_schedule(warmup, arrivals.at(args.rate, seed=args.seed + 1).offsets(len(warmup)))
    offsets = arrivals.offsets(len(requests))
    if args.processes > 1:
        result = run_processes(gen.base_url, gen.model, requests, offsets,
                               processes=args.processes, api_key=api_key,
                               max_in_flight=args.max_in_flight)
    else:
        result = gen.run_schedule(requests, offsets, max_in_flight=args.max_in_flight)
    fig = openloop.figures(result)
    return {"mode": "open", "rate_rps": args.rate, "arrivals": arrivals.describe(),
            "requests": result.n, "throughput_rps": fig["achieved_rps"],
            "client_cpu_s": result.client_cpu_s, "wall_s": result.wall_s, **fig,
            "errors": fig["requests_failed"] + fig["requests_dropped"],
            "error_messages": fig["errors"]}, result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embedgate.perf.bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", required=True, help="served model name")
    parser.add_argument("--input", required=True,
                        help="texts or requests: .jsonl / .tsv#COLUMN / .csv / .txt")
    parser.add_argument("--requests", type=int, required=True, help="timed requests")
    parser.add_argument("--warmup", type=int, default=0, help="untimed requests first")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--concurrency", type=int, help="closed loop: this many in flight")
    mode.add_argument("--rate", type=float, help="open loop: offered requests/s")
    parser.add_argument("--arrivals", default="poisson", help="poisson, constant or gamma:B")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-in-flight", type=int, default=openloop.DEFAULT_MAX_IN_FLIGHT)
    parser.add_argument("--processes", type=int, default=1, help="open loop: load processes")
    parser.add_argument("--encoding-format", default="float", choices=("float", "base64"))
    parser.add_argument("--export", default=None, help="one JSON line per request here")
    args = parser.parse_args(argv)
    workload = from_file(args.input)
    inputs = workload.inputs(args.warmup + args.requests, attempt=0)
    api_key = os.environ.get("EMBEDGATE_API_KEY") or None
    with OpenLoopGenerator(args.url, args.model, api_key=api_key,
                           encoding_format=args.encoding_format) as gen:
        prepared = [gen.prepare(x) for x in inputs]
        warmup, timed = prepared[:args.warmup], prepared[args.warmup:]
        started = time.time()
        if args.concurrency is not None:
            out = closed(gen, timed, args.concurrency, warmup)
        else:
            out, result = open_loop(gen, timed, args, warmup, api_key)
            if args.export:
                from embedgate.perf.capacity import export_rows

                result.info.update(offered_rps=args.rate, attempt=0)
                with open(args.export, "w", encoding="utf-8") as sink:
                    export_rows(sink, result, scenario="bench")
    out.update(started_unix_s=started, workload=workload.as_dict())
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0 if not out["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
