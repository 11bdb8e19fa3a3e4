"""The open-loop generator's headroom: how closely it keeps a schedule at high rates.

Against the trivial server (its own process, pinned to one CPU) with the client thread pinned to
another, a Poisson schedule at 1,000 and 10,000 requests/s: the send lag (actual minus scheduled
send time) percentiles, the achieved rate and the client's CPU per request. The trivial server
answers in microseconds, so what lag remains is the client's (and the machine's) own.
"""

from __future__ import annotations

import os
from typing import Any

from embedgate.perf import openloop
from embedgate.perf.arrivals import Arrivals
from embedgate.perf.memory import MemorySampler, ProcessTreeMemory
from embedgate.perf.openloop import OpenLoopGenerator
from embedgate.perf.overhead import cpu_plan, pinned_thread, trivial_server
from embedgate.perf.scenarios import OPEN_LOOP_CLIENT_SECONDS
from embedgate.perf.slo import keep_up

WARMUP_S = 0.5


def run_scenario(benchmark: Any, *, dim: int, rate: float, record: Any,
                 seconds: float = OPEN_LOOP_CLIENT_SECONDS,
                 interval_s: float = 0.02) -> dict[str, Any]:
    client_cpu, server_cpu = cpu_plan()
    scenario = f"client_overhead/open_loop_{int(rate)}"
    benchmark.group = "client_overhead"
    n = int(rate * seconds)
    done: list[openloop.OpenLoopResult] = []
    with trivial_server(dim=dim, cpu=server_cpu) as url, \
            OpenLoopGenerator(url, "trivial") as gen, pinned_thread(client_cpu):
        warm = [gen.prepare(f"warm {i}") for i in range(int(rate * WARMUP_S))]
        gen.run_schedule(warm, Arrivals("poisson", rate, seed=99).offsets(len(warm)))
        requests = [gen.prepare(f"open loop probe {i}") for i in range(n)]
        offsets = Arrivals("poisson", rate, seed=0).offsets(n)
        sampler = MemorySampler(ProcessTreeMemory(os.getpid(), include_children=False),
                                interval_s=interval_s, gpu_reason="not applicable: the load "
                                "generator's own process").start()
        try:
            benchmark.pedantic(lambda: done.append(gen.run_schedule(requests, offsets)),
                               rounds=1, warmup_rounds=0, iterations=1)
        finally:
            memory = sampler.stop()
    result = done[-1]
    ratio, _ = keep_up([result])
    figures = {"scenario": scenario, "group": "client_overhead", "offered_rps": rate,
               "plan": f"Poisson schedule at {rate:g} req/s for {seconds:g} s to the trivial "
                       f"server; client pinned to CPU {client_cpu}, server to CPU {server_cpu}",
               "client_pinned_cpu": client_cpu, "server_pinned_cpu": server_cpu,
               **openloop.figures(result), "keep_up_ratio": ratio, **memory,
               "peak_memory_source": "psutil: PSS of the load generator's own process",
               "gate_skip_reason": "the kit's own client cost, not the server's; gate it with a "
                                   "scoped rule, e.g. client_overhead/*:schedule_lag_p99_ms:+2"}
    benchmark.extra_info.update(figures)
    record(scenario, figures)
    return figures
