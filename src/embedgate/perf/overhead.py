"""The load generator's own cost, measured against the trivial local server.

The server runs in its own process pinned to one CPU and the client thread is pinned to another,
so the client has exactly one core: the achieved requests/s is what the client sustains on one
core (when the server keeps up), and the client thread's CPU time per request is its cost, from
which the most requests/s one core could drive follows (1 / cost).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import subprocess
import sys
from typing import Any, Iterator

from embedgate.perf.loadgen import LoadGenerator, LoadResult, raise_on_errors
from embedgate.perf.memory import MemorySampler, ProcessTreeMemory
from embedgate.perf.runner import summarize
from embedgate.perf.scenarios import OVERHEAD_REQUESTS, OVERHEAD_ROUNDS, OVERHEAD_WARMUP
from embedgate.serve.lifecycle import free_port


def cpu_plan() -> tuple[int | None, int | None]:
    """(client CPU, server CPU): two distinct allowed CPUs, or (None, None) when there is one."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


@contextlib.contextmanager
def pinned_thread(cpu: int | None) -> Iterator[None]:
    """Pin the calling thread (pid 0 means this thread on Linux) to one CPU, then restore."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def trivial_server(*, dim: int = 384, cpu: int | None = None, timeout_s: float = 30.0,
                   echo_max_tokens: int | None = None, leak_bytes: int = 0,
                   service_ms: float | None = None,
                   served_name: str | None = None) -> Iterator[str]:
    """Run embedgate.perf.trivial_server in a child process; yields its base URL.
    echo_max_tokens: run it in --echo mode (a stand-in server for the kit's tests);
    leak_bytes: keep that much per request (a leaking server);
    service_ms: one request at a time, this long each (a server that saturates)."""
    port = free_port()
    read_fd, write_fd = os.pipe()
    cmd = [sys.executable, "-m", "embedgate.perf.trivial_server", "--port", str(port),
           "--dim", str(dim), "--ready-fd", str(write_fd)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    if echo_max_tokens is not None:
        cmd += ["--echo", "--max-tokens", str(echo_max_tokens)]
    if leak_bytes:
        cmd += ["--leak-bytes", str(leak_bytes)]
    if service_ms is not None:
        cmd += ["--service-ms", str(service_ms)]
    if served_name is not None:
        cmd += ["--served-name", served_name]
    proc = subprocess.Popen(cmd, pass_fds=(write_fd,), stdin=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as ready:
            readable, _, _ = select.select([ready], [], [], timeout_s)
            line = ready.readline() if readable else b""  # b"": EOF, the child died first
            if line.strip() != b"ready":
                raise RuntimeError(f"trivial server did not start within {timeout_s:g} s "
                                   f"(exit code {proc.poll()})")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_scenario(benchmark: Any, *, dim: int, concurrency: int, record: Any,
                 interval_s: float = 0.02) -> dict[str, Any]:
    """client_overhead/C: rounds of OVERHEAD_REQUESTS against the trivial server, this thread
    pinned to one CPU and the server to another. Memory is the client's own process."""
    client_cpu, server_cpu = cpu_plan()
    scenario = f"client_overhead/{concurrency}"
    benchmark.group = "client_overhead"
    rounds, warmup = OVERHEAD_ROUNDS, 1
    with trivial_server(dim=dim, cpu=server_cpu) as url, \
            LoadGenerator(url, "trivial") as gen, pinned_thread(client_cpu):
        plan = [[gen.prepare(f"overhead probe {k} {i}") for i in range(OVERHEAD_REQUESTS)]
                for k in range(rounds + warmup)]
        gen.warm_connections(concurrency)
        raise_on_errors(gen.run(plan[0][:OVERHEAD_WARMUP], concurrency=concurrency), "warm-up")
        done: list[LoadResult] = []
        calls = itertools.count()

        def round_(k: int) -> None:
            result = gen.run(plan[k], concurrency=concurrency)
            raise_on_errors(result, f"{scenario} round {k}")
            done.append(result)

        sampler = MemorySampler(ProcessTreeMemory(os.getpid(), include_children=False),
                                interval_s=interval_s, gpu_reason="not applicable: the load "
                                "generator's own process").start()
        try:
            benchmark.pedantic(round_, setup=lambda: ((next(calls),), {}), rounds=rounds,
                               warmup_rounds=warmup, iterations=1)
        finally:
            memory = sampler.stop()
    timed = done if getattr(benchmark, "disabled", False) else done[warmup:]
    figures = {"scenario": scenario, "group": "client_overhead", "concurrency": concurrency,
               "requests_per_round": OVERHEAD_REQUESTS, "warmup_rounds": warmup,
               "plan": f"{OVERHEAD_REQUESTS} single-input requests to the trivial server, "
                       f"{concurrency} in flight; client pinned to CPU {client_cpu}, server to "
                       f"CPU {server_cpu}",
               "client_pinned_cpu": client_cpu, "server_pinned_cpu": server_cpu,
               **summarize(timed), **memory}
    cpu_us = figures["client_cpu_per_request_us"]
    figures["client_max_rps_one_core"] = 1e6 / cpu_us if cpu_us else None
    figures["client_achieved_rps"] = figures["throughput_rps_round_median"]
    figures["peak_memory_source"] = "psutil: PSS of the load generator's own process"
    figures["gate_skip_reason"] = ("the kit's own client cost, not the server's; gate it with a "
                                   "scoped rule, e.g. client_overhead/*:throughput_rps:-20%")
    benchmark.extra_info.update(figures)
    record(scenario, figures)
    return figures
