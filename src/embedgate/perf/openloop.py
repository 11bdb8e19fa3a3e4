"""Open-loop load: each request is sent at its scheduled time, answered or not.

A closed loop sends the next request when the last one is answered, so a slow server slows its
own load and queueing never shows (coordinated omission). Here a dispatcher walks a schedule
(`arrivals`) and starts each request when it is due. Latency runs from the *scheduled* time to the
last byte of the answer, so time spent waiting in the client counts as users feel it; the actual
send time is recorded too, so a client that falls behind shows up as schedule lag, not as server
latency. At most ``max_in_flight`` requests are outstanding: a request due while the cap is full
waits for a slot (``on_full="queue"``: it is sent late and counted) or is dropped (``"drop"``:
counted, never sent). Nothing is hidden: every scheduled request ends in the result as answered,
failed or dropped.

Timing: asyncio's epoll timeout rounds every sleep up to a whole millisecond, which would make
10k req/s leave in 1 ms bursts; on Linux the dispatcher sleeps on a timerfd (the kernel's
high-resolution timer) instead. Several processes can share one schedule (`run_processes`) when
one core cannot keep it; they agree on the start on CLOCK_MONOTONIC, which all processes share.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import math
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

import numpy as np

from embedgate.perf.loadgen import (LoadGenerator, PreparedRequest, _read_response,
                                    answer_error, usage_tokens)

ON_FULL = ("queue", "drop")
DEFAULT_MAX_IN_FLIGHT = 256
WARM_FOR_S = 0.05           # connections opened up front: the mean rate times this
START_LEAD_S = 0.05          # the first request is due this long after run() has set up
PROCESS_START_TIMEOUT_S = 60.0
STATUS_DROPPED = -1          # never sent: the in-flight cap was full (on_full="drop")
STATUS_TRANSPORT = 0         # sent, but no HTTP answer (refused, reset, timed out)
_MAX_ERRORS_KEPT = 5

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class OpenLoopResult:
    """Every scheduled request, by index. Times are seconds from the run's start (the time the
    first request was due); ``sent_s``/``done_s`` are NaN for dropped requests."""

    scheduled_s: np.ndarray
    sent_s: np.ndarray
    done_s: np.ndarray
    status: np.ndarray           # HTTP status; STATUS_TRANSPORT; STATUS_DROPPED
    ok: np.ndarray               # answered 200 with one embedding per input
    waited: np.ndarray           # had to wait for a free slot under the in-flight cap
    tokens: np.ndarray           # usage.prompt_tokens, -1 when unknown
    n_inputs: np.ndarray
    max_in_flight: int
    peak_in_flight: int
    client_cpu_s: float
    wall_s: float
    connections_opened: int = 0
    processes: int = 1
    errors: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # what the caller attaches: digests...

    @property
    def n(self) -> int:
        return int(self.scheduled_s.size)

    @property
    def dropped(self) -> np.ndarray:
        return self.status == STATUS_DROPPED

    @property
    def latency_s(self) -> np.ndarray:
        """Scheduled time to answer, for answered requests (the users' view)."""
        return (self.done_s - self.scheduled_s)[self.ok]

    @property
    def service_s(self) -> np.ndarray:
        """Actual send to answer, for answered requests (the server's view)."""
        return (self.done_s - self.sent_s)[self.ok]

    @property
    def lag_s(self) -> np.ndarray:
        """Actual send minus scheduled send, for every request that was sent."""
        sent = ~self.dropped
        return (self.sent_s - self.scheduled_s)[sent]


class Dispatcher:
    """Starts ``send(i)`` at ``start + offsets[i]`` under an in-flight cap; pure scheduling,
    with the clock and the sleep injected (tests drive it with a fake clock)."""

    def __init__(self, offsets: Sequence[float], *, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 on_full: str = "queue", clock: Clock = time.monotonic,
                 sleep_until: Callable[[float], Awaitable[None]] | None = None):
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if on_full not in ON_FULL:
            raise ValueError(f"on_full must be one of {ON_FULL}")
        self.offsets = [float(o) for o in offsets]
        self.max_in_flight, self.on_full, self.clock = max_in_flight, on_full, clock
        self.sleep_until = sleep_until or self._asyncio_sleep_until
        self.dropped = [False] * len(self.offsets)
        self.waited = [False] * len(self.offsets)
        self.in_flight = 0
        self.peak_in_flight = 0

    async def _asyncio_sleep_until(self, when: float) -> None:
        delay = when - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)

    async def run(self, start: float, send: Callable[[int], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        slot_freed = asyncio.Event()
        pending: set[asyncio.Future] = set()

        def finished(task: asyncio.Future) -> None:
            self.in_flight -= 1
            pending.discard(task)
            slot_freed.set()

        held_until = float("-inf")  # requests due before this were held back by the cap
        for i, offset in enumerate(self.offsets):
            due = start + offset
            if due < held_until:
                self.waited[i] = True
            elif due > self.clock():
                await self.sleep_until(due)
            if self.in_flight >= self.max_in_flight:
                if self.on_full == "drop":
                    self.dropped[i] = True
                    continue
                self.waited[i] = True
                while self.in_flight >= self.max_in_flight:
                    slot_freed.clear()
                    await slot_freed.wait()
                held_until = self.clock()
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            task = loop.create_task(send(i))
            pending.add(task)
            task.add_done_callback(finished)
        while pending:
            await asyncio.gather(*list(pending))


class _TimerFd:
    """Sleeps until an absolute CLOCK_MONOTONIC time on a Linux timerfd (~50 us precision)."""

    CLOCK_MONOTONIC, TFD_TIMER_ABSTIME = 1, 1
    TFD_NONBLOCK, TFD_CLOEXEC = 0o4000, 0o2000000

    class _Itimerspec(ctypes.Structure):
        _fields_ = [("it_interval", ctypes.c_long * 2), ("it_value", ctypes.c_long * 2)]

    def __init__(self, libc: Any, fd: int, loop: asyncio.AbstractEventLoop):
        self._libc, self.fd, self._loop = libc, fd, loop
        self._waiter: asyncio.Future | None = None
        loop.add_reader(fd, self._fired)

    @classmethod
    def open(cls, loop: asyncio.AbstractEventLoop) -> "_TimerFd | None":
        """A timerfd on this loop, or None where there is none (not Linux, no libc symbol)."""
        if not hasattr(time, "CLOCK_MONOTONIC") or os.uname().sysname != "Linux":
            return None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            create = libc.timerfd_create
        except (OSError, AttributeError):
            return None
        fd = create(cls.CLOCK_MONOTONIC, cls.TFD_NONBLOCK | cls.TFD_CLOEXEC)
        return cls(libc, fd, loop) if fd >= 0 else None

    async def until(self, when: float) -> None:
        sec = math.floor(when)
        spec = self._Itimerspec((0, 0), (sec, max(1, int((when - sec) * 1e9))))
        if self._libc.timerfd_settime(self.fd, self.TFD_TIMER_ABSTIME, ctypes.byref(spec),
                                      None) != 0:
            delay = when - time.monotonic()  # cannot arm it: fall back to the loop's timer
            if delay > 0:
                await asyncio.sleep(delay)
            return
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            return
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self) -> None:
        self._loop.remove_reader(self.fd)
        os.close(self.fd)


class OpenLoopGenerator(LoadGenerator):
    """The kit's load generator with a schedule: ``run_schedule(requests, offsets)``."""

    def run_schedule(self, requests: Sequence[PreparedRequest], offsets: Sequence[float], *,
                     max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, on_full: str = "queue",
                     warm: int | None = None, start_at: float | None = None,
                     precise: bool = True) -> OpenLoopResult:
        """Send requests[i] at offsets[i] seconds after the start (monotonic `start_at`, else
        START_LEAD_S from now); blocks until every request is answered, failed or dropped.
        warm: connections opened before the start (default: enough for 50 ms of the
        schedule's mean rate, 4 to 64); more are opened during the run when needed, and counted."""
        if len(requests) != len(offsets):
            raise ValueError(f"{len(requests)} requests but {len(offsets)} scheduled times")
        if warm is None:
            span = float(offsets[-1] - offsets[0]) if len(offsets) > 1 else 0.0
            rate = (len(offsets) - 1) / span if span > 0 else 0.0
            warm = int(min(64, max(4, math.ceil(rate * WARM_FOR_S))))
        self.warm_connections(min(max_in_flight, len(requests), warm))
        return self._loop.run_until_complete(
            self._run_schedule(requests, offsets, max_in_flight, on_full, start_at, precise))

    async def _run_schedule(self, requests, offsets, max_in_flight, on_full, start_at,
                            precise) -> OpenLoopResult:
        n = len(requests)
        nan = float("nan")
        sent, done = [nan] * n, [nan] * n
        status, ok, tokens = [STATUS_DROPPED] * n, [False] * n, [-1] * n
        errors: list[str] = []
        counts = {"opened": 0}
        clock = time.monotonic
        timer = _TimerFd.open(self._loop) if precise else None
        dispatcher = Dispatcher(offsets, max_in_flight=max_in_flight, on_full=on_full,
                                clock=clock, sleep_until=timer.until if timer else None)
        start = start_at if start_at is not None else clock() + START_LEAD_S

        async def send(i: int) -> None:
            req = requests[i]
            conn = self._idle.pop() if self._idle else None
            if conn is not None and conn.stale:  # the server may be closing it: never reuse
                conn.close()
                conn = None
            try:
                if conn is None:
                    counts["opened"] += 1
                    conn = await self._connect()
                sent[i] = clock() - start
                conn.writer.write(req.data)
                code, body, keep = await asyncio.wait_for(_read_response(conn.reader),
                                                          self.timeout_s)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    asyncio.TimeoutError, ValueError) as exc:
                done[i] = clock() - start
                if math.isnan(sent[i]):
                    sent[i] = done[i]
                status[i] = STATUS_TRANSPORT
                if len(errors) < _MAX_ERRORS_KEPT:
                    errors.append(f"request {i}: {type(exc).__name__}: {exc}")
                if conn is not None:
                    conn.close()
                return
            done[i] = clock() - start
            status[i] = code
            problem = answer_error(req, code, body)
            if problem is None:
                ok[i] = True
                tokens[i] = usage_tokens(body) or -1
            elif len(errors) < _MAX_ERRORS_KEPT:
                errors.append(f"request {i}: {problem}")
            if keep:
                conn.last_used = time.monotonic()
                self._idle.append(conn)
            else:
                conn.close()

        cpu0, wall0 = time.thread_time(), time.perf_counter()
        try:
            await dispatcher.run(start, send)
        finally:
            if timer is not None:
                timer.close()
        return OpenLoopResult(
            scheduled_s=np.asarray(offsets, dtype=float), sent_s=np.asarray(sent),
            done_s=np.asarray(done), status=np.asarray(status), ok=np.asarray(ok),
            waited=np.asarray(dispatcher.waited), tokens=np.asarray(tokens),
            n_inputs=np.asarray([r.n_inputs for r in requests]), max_in_flight=max_in_flight,
            peak_in_flight=dispatcher.peak_in_flight, client_cpu_s=time.thread_time() - cpu0,
            wall_s=time.perf_counter() - wall0, connections_opened=counts["opened"],
            errors=errors)


# -- several processes on one schedule -------------------------------------------------------

def _worker(pipe, base_url: str, model: str, api_key: str | None, timeout_s: float,
            data: list[bytes], n_inputs: list[int], offsets: list[float], max_in_flight: int,
            on_full: str, cpu: int | None) -> None:
    """One process's share: warm up, say ready, wait for the common start, run, send back."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    requests = [PreparedRequest(d, k) for d, k in zip(data, n_inputs)]
    with OpenLoopGenerator(base_url, model, api_key=api_key, timeout_s=timeout_s) as gen:
        gen.warm_connections(min(max_in_flight, len(requests), 64))
        pipe.send("ready")
        start = pipe.recv()
        result = gen._loop.run_until_complete(
            gen._run_schedule(requests, offsets, max_in_flight, on_full, start, True))
    pipe.send({k: getattr(result, k) for k in (
        "sent_s", "done_s", "status", "ok", "waited", "tokens", "peak_in_flight",
        "client_cpu_s", "wall_s", "connections_opened", "errors")})
    pipe.close()


def run_processes(base_url: str, model: str, requests: Sequence[PreparedRequest],
                  offsets: Sequence[float], *, processes: int, api_key: str | None = None,
                  timeout_s: float = 120.0, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                  on_full: str = "queue", cpus: Sequence[int] | None = None) -> OpenLoopResult:
    """One schedule over `processes` worker processes (request i goes to process i % P, each
    with its own in-flight cap of max_in_flight / P), merged back by index. Linux only: the
    processes share CLOCK_MONOTONIC for the start."""
    if processes < 1:
        raise ValueError("processes must be >= 1")
    if len(requests) != len(offsets):
        raise ValueError(f"{len(requests)} requests but {len(offsets)} scheduled times")
    ctx = multiprocessing.get_context("spawn")
    cap = max(1, max_in_flight // processes)
    workers = []
    try:
        for k in range(processes):
            idx = range(k, len(requests), processes)
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, daemon=True, args=(
                child, base_url, model, api_key, timeout_s, [requests[i].data for i in idx],
                [requests[i].n_inputs for i in idx], [float(offsets[i]) for i in idx], cap,
                on_full, cpus[k % len(cpus)] if cpus else None))
            proc.start()
            child.close()
            workers.append((proc, parent, idx))
        for proc, parent, _ in workers:
            if not parent.poll(PROCESS_START_TIMEOUT_S):
                raise RuntimeError(f"load process {proc.pid} was not ready within "
                                   f"{PROCESS_START_TIMEOUT_S:g} s (exit code {proc.exitcode})")
            parent.recv()
        start = time.monotonic() + START_LEAD_S * 4
        for _, parent, _ in workers:
            parent.send(start)
        parts = []
        for proc, parent, idx in workers:
            try:
                parts.append((parent.recv(), idx))
            except EOFError:
                raise RuntimeError(f"load process {proc.pid} died mid-run (exit code "
                                   f"{proc.exitcode})") from None
    finally:
        for proc, parent, _ in workers:
            parent.close()
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return _merge(parts, offsets, requests, max_in_flight, processes)


def _merge(parts, offsets, requests, max_in_flight: int, processes: int) -> OpenLoopResult:
    n = len(offsets)
    out = {k: np.full(n, np.nan) for k in ("sent_s", "done_s")}
    status = np.full(n, STATUS_DROPPED)
    ok, waited = np.zeros(n, bool), np.zeros(n, bool)
    tokens = np.full(n, -1)
    errors: list[str] = []
    for part, idx in parts:
        where = np.asarray(list(idx), dtype=int)
        for key in ("sent_s", "done_s"):
            out[key][where] = part[key]
        status[where], ok[where] = part["status"], part["ok"]
        waited[where], tokens[where] = part["waited"], part["tokens"]
        errors += part["errors"]
    return OpenLoopResult(
        scheduled_s=np.asarray(offsets, dtype=float), sent_s=out["sent_s"], done_s=out["done_s"],
        status=status, ok=ok, waited=waited, tokens=tokens,
        n_inputs=np.asarray([r.n_inputs for r in requests]), max_in_flight=max_in_flight,
        peak_in_flight=sum(p["peak_in_flight"] for p, _ in parts),
        client_cpu_s=sum(p["client_cpu_s"] for p, _ in parts),
        wall_s=max(p["wall_s"] for p, _ in parts),
        connections_opened=sum(p["connections_opened"] for p, _ in parts),
        processes=processes, errors=errors[:_MAX_ERRORS_KEPT])


# -- figures ---------------------------------------------------------------------------------

LATE_MS = 10.0  # a request sent more than this after its due time is counted late
TRIM = 0.05     # rates are measured between the 5th and 95th percentile of their events


def event_rate(times: np.ndarray) -> float | None:
    """Events per second between the TRIM and 1-TRIM quantiles of their times (all of them
    under 20 events), so one slow first or last answer cannot move the rate."""
    times = np.sort(np.asarray(times, dtype=float))
    if times.size < 2:
        return None
    if times.size >= 20:
        lo, hi = np.quantile(times, [TRIM, 1 - TRIM])
        inside = (1 - 2 * TRIM) * (times.size - 1)
    else:
        lo, hi, inside = times[0], times[-1], times.size - 1
    return inside / (hi - lo) if hi > lo else None


def achieved_rate(result: OpenLoopResult) -> float | None:
    """Answers per second (answered requests only)."""
    return event_rate(result.done_s[result.ok])


def offered_rate(result: OpenLoopResult) -> float | None:
    """The rate the schedule offered, measured the same way as `achieved_rate`."""
    return event_rate(result.scheduled_s)


def figures(result: OpenLoopResult, *, late_ms: float = LATE_MS) -> dict[str, Any]:
    """What one open-loop run shows: rates, latency from the schedule and from the send, the
    client's lag behind its schedule, what was late, failed or dropped, and the concurrency the
    server actually saw."""
    from embedgate.perf.stats import latency_figures

    sent = ~result.dropped
    answered = result.ok
    done = np.sort(result.done_s[answered])
    achieved = achieved_rate(result)
    lag_ms = result.lag_s * 1e3
    busy = result.done_s[sent] - result.sent_s[sent]
    window = (float(np.nanmax(result.done_s[sent]) - np.nanmin(result.sent_s[sent]))
              if sent.any() else 0.0)
    tokens = result.tokens[answered]
    token_span = float(done[-1] - done[0]) if done.size > 1 else 0.0
    out: dict[str, Any] = {
        "requests_scheduled": result.n, "requests_sent": int(sent.sum()),
        "requests_answered": int(answered.sum()),
        "requests_failed": int((sent & ~answered).sum()),
        "requests_dropped": int(result.dropped.sum()),
        "requests_waited_for_slot": int(result.waited.sum()),
        "requests_late": int(np.sum(lag_ms > late_ms)), "late_ms": late_ms,
        "offered_realized_rps": offered_rate(result),
        "achieved_rps": achieved,
        **latency_figures(result.latency_s),
        **latency_figures(result.service_s, "service"),
        "schedule_lag_p50_ms": float(np.percentile(lag_ms, 50)) if lag_ms.size else None,
        "schedule_lag_p99_ms": float(np.percentile(lag_ms, 99)) if lag_ms.size else None,
        "schedule_lag_max_ms": float(lag_ms.max()) if lag_ms.size else None,
        "concurrency_mean": float(np.sum(busy) / window) if window > 0 else None,
        "concurrency_peak": result.peak_in_flight, "max_in_flight": result.max_in_flight,
        "tokens_per_s": (float(tokens.sum()) / token_span
                         if token_span > 0 and tokens.size and (tokens >= 0).all() else None),
        "client_cpu_per_request_us": (result.client_cpu_s / int(sent.sum()) * 1e6
                                      if sent.any() else None),
        "client_cpu_share_pct": (result.client_cpu_s / result.wall_s * 100 / result.processes
                                 if result.wall_s > 0 else None),
        "load_processes": result.processes,
        "connections_opened_in_run": result.connections_opened,
        "errors": list(result.errors),
    }
    return out
