"""Distributed load on Locust: one headless master and its workers, as a drop-in load generator.

Why: the in-process generator is one asyncio loop on one core, enough for one server but not
for a fleet. `LocustGenerator` has the in-process generator's interface (`prepare`, `run`,
`warm_connections`) and returns the same `LoadResult`, so a scenario's rounds, figures, JSON and
perf gate are the same whichever engine sent the load. Each `run` is one Locust test: the master
(``--master --headless --expect-workers W``) and `local_workers` worker processes on loopback;
more workers may join from other machines (``--master-host``), when `expect_workers` counts them
and `bind_host` is an address they can reach. The users live in `embedgate.perf.locust_users`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from embedgate.perf.loadgen import PreparedRequest, LoadResult
from embedgate.serve.backends import LOOPBACK
from embedgate.serve.lifecycle import free_port, log_tail, stop_process_group, die_with_parent

LOCUSTFILE = Path(__file__).with_name("locust_users.py")
EXPECT_WORKERS_WAIT_S = 60  # how long the master waits for its workers before it gives up
SPAWN_RATE_FLOOR = 1000     # users per second: every user starts at once, not on a ramp
_MAX_ERRORS_KEPT = 5


class LocustError(RuntimeError):
    """The Locust run did not deliver a result for every request; the message has its logs."""


def master_command(locustfile: Path, *, base_url: str, users: int, bind_host: str, port: int,
                   expect_workers: int, workload: Path, results: Path,
                   run_time_s: float, python: str = sys.executable) -> list[str]:
    return [python, "-m", "locust", "-f", str(locustfile), "--master", "--headless",
            "--master-bind-host", bind_host, "--master-bind-port", str(port),
            "--expect-workers", str(expect_workers),
            "--expect-workers-max-wait", str(EXPECT_WORKERS_WAIT_S),
            "--users", str(users), "--spawn-rate", str(max(users, SPAWN_RATE_FLOOR)),
            "--host", base_url, "--run-time", f"{int(run_time_s) + 1}s",
            "--only-summary", "--loglevel", "WARNING",
            "--embedgate-workload", str(workload), "--embedgate-results", str(results)]


def worker_command(locustfile: Path, *, master_host: str, port: int,
                   python: str = sys.executable) -> list[str]:
    """What a worker on another machine runs too (with the master's reachable address)."""
    return [python, "-m", "locust", "-f", str(locustfile), "--worker",
            "--master-host", master_host, "--master-port", str(port), "--loglevel", "WARNING"]


def shares(n_requests: int, users_by_worker: dict[str, int]) -> dict[str, list[int]]:
    """Request indices per worker, in proportion to its users, interleaved (a worker without
    users gets none: nothing there would send them)."""
    slots = [w for w, users in sorted(users_by_worker.items()) for _ in range(users)]
    if not slots:
        raise ValueError("no Locust worker has a user")
    out: dict[str, list[int]] = {w: [] for w, users in sorted(users_by_worker.items())
                                 if users > 0}
    for i in range(n_requests):
        out[slots[i % len(slots)]].append(i)
    return out


def load_window_s(doc: dict[str, Any]) -> float | None:
    """First request sent to last answer in, over all workers (their wall clocks): the run's
    wall time without the processes' start and stop."""
    firsts = [w["t_first"] for w in doc["workers"] if w.get("t_first") is not None]
    lasts = [w["t_last"] for w in doc["workers"] if w.get("t_first") is not None]
    return max(lasts) - min(firsts) if firsts else None


def merge_results(doc: dict[str, Any], requests: Sequence[PreparedRequest],
                  wall_s: float) -> LoadResult:
    """Every worker's (index, latency, error, tokens) back into request order; a request no
    worker answered for is an error, never a missing sample. wall_s: used when the workers
    sent no times."""
    n = len(requests)
    latencies = [0.0] * n
    tokens: list[int | None] = [None] * n
    seen = [False] * n
    errors: list[str] = []
    n_errors = 0
    for worker in doc["workers"]:
        for index, latency, error, tok in worker["results"]:
            latencies[index], tokens[index], seen[index] = latency, tok, True
            if error:
                n_errors += 1
                if len(errors) < _MAX_ERRORS_KEPT:
                    errors.append(error)
    missing = seen.count(False)
    if missing:
        n_errors += missing
        errors.append(f"{missing} requests came back from no worker")
    known = [t for t in tokens if t is not None]
    total_tokens = sum(known) if len(known) == n and not n_errors else None
    cpu = sum(w.get("cpu_s", 0.0) for w in doc["workers"])
    return LoadResult(latencies, load_window_s(doc) or wall_s, sum(r.n_inputs for r in requests), total_tokens, cpu,
                      errors, n_errors)


def histogram_percentile(histogram: dict[str, int], q: float) -> float | None:
    """The q-quantile (0..1) of Locust's response-time histogram (rounded ms -> count)."""
    points = sorted((float(ms), n) for ms, n in histogram.items())
    total = sum(n for _, n in points)
    if not total:
        return None
    rank, seen = q * total, 0
    for ms, n in points:
        seen += n
        if seen >= rank:
            return ms
    return points[-1][0]


class LocustGenerator:
    """Use as a context manager; `run()` blocks until the Locust test has ended."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 timeout_s: float = 120.0, encoding_format: str = "float",
                 local_workers: int = 2, expect_workers: int | None = None,
                 bind_host: str = LOOPBACK, port: int | None = None,
                 workdir: Path | None = None, run_timeout_s: float = 600.0):
        """run_timeout_s: a run (workers joining included) that takes longer is ended and
        fails with the processes' logs."""
        if local_workers < 0:
            raise ValueError("local_workers must be >= 0")
        self.expect_workers = expect_workers or local_workers
        if self.expect_workers < 1:
            raise ValueError("Locust needs at least one worker (local or expected from "
                             "other machines)")
        self.base_url, self.model, self.api_key = base_url.rstrip("/"), model, api_key
        self.timeout_s, self.encoding_format = timeout_s, encoding_format
        self.local_workers, self.bind_host, self.port = local_workers, bind_host, port
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="embedgate-locust-")
        self.workdir = Path(workdir or self._tmp.name)
        self.run_timeout_s = run_timeout_s
        self.last_locust_stats: dict[str, Any] | None = None
        self.runs = 0

    def __enter__(self) -> "LocustGenerator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def prepare(self, inputs: Sequence[str] | str, **extra: Any) -> PreparedRequest:
        """The JSON body alone: each worker's HTTP client writes its own request line."""
        payload = {"model": self.model, "input": inputs, "encoding_format": self.encoding_format,
                   **extra}
        n = 1 if isinstance(inputs, str) else len(inputs)
        return PreparedRequest(json.dumps(payload, separators=(",", ":")).encode(), n)

    def warm_connections(self, count: int) -> None:
        """Nothing to warm here: the worker processes start with each run."""

    def run(self, requests: Sequence[PreparedRequest], *, concurrency: int,
            keep_first_body: bool = False) -> LoadResult:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.runs += 1
        tag = f"run{self.runs}"
        workload = self.workdir / f"{tag}-workload.json"
        results = self.workdir / f"{tag}-results.json"
        workload.write_text(json.dumps({"bodies": [r.data.decode() for r in requests],
                                        "n_inputs": [r.n_inputs for r in requests]}))
        port = self.port or free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.api_key:
            env["EMBEDGATE_API_KEY"] = self.api_key  # the environment, never argv
        budget = self.run_timeout_s
        master = master_command(LOCUSTFILE, base_url=self.base_url, users=concurrency,
                                bind_host=self.bind_host, port=port,
                                expect_workers=self.expect_workers, workload=workload,
                                results=results, run_time_s=budget)
        procs: list[tuple[subprocess.Popen, Path]] = []
        t0 = time.perf_counter()
        try:
            procs.append(self._spawn(master, self.workdir / f"{tag}-master.log", env))
            connect = LOOPBACK if self.bind_host in ("0.0.0.0", "") else self.bind_host
            for k in range(self.local_workers):
                procs.append(self._spawn(worker_command(LOCUSTFILE, master_host=connect,
                                                        port=port),
                                         self.workdir / f"{tag}-worker{k}.log", env))
            try:
                procs[0][0].wait(timeout=budget + 10)  # the master's --run-time ends it first
            except subprocess.TimeoutExpired:
                pass
            wall = time.perf_counter() - t0
            if not results.is_file():
                raise LocustError(self._failure(
                    procs, f"ended without results after {wall:.0f} s (limit {budget:g} s)"))
            doc = json.loads(results.read_text())
            if "error" in doc:
                raise LocustError(self._failure(procs, f"failed in the master:\n{doc['error']}"))
        finally:
            for proc, _ in procs:
                stop_process_group(proc, grace_s=5.0)
        stats = dict(doc["locust"])
        stats["p50_ms"] = histogram_percentile(stats["response_times_ms"], 0.5)
        self.last_locust_stats = stats
        return merge_results(doc, requests, wall)

    @staticmethod
    def _spawn(command: list[str], log: Path, env: dict[str, str]) -> tuple[subprocess.Popen,
                                                                             Path]:
        with log.open("w") as fh:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=fh,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                    preexec_fn=die_with_parent)
        return proc, log

    @staticmethod
    def _failure(procs: list[tuple[subprocess.Popen, Path]], what: str) -> str:
        parts = [f"the Locust run {what}."]
        for proc, log in procs:
            parts.append(f"--- {log.name} (pid {proc.pid}, exit code {proc.poll()}) ---\n"
                         f"{log_tail(log, 20)}")
        return "\n".join(parts)
