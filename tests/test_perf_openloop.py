"""The open-loop generator (issue 13): requests leave on their schedule whether or not earlier
ones were answered; latency counts from the scheduled time; the in-flight cap makes requests wait
or drops them, and both are counted. Scheduling logic runs on a fake clock; the generator itself
against the trivial server and a server that holds its answers."""

import asyncio
import heapq
import threading

import numpy as np
import pytest

from embedgate.perf import openloop
from embedgate.perf.arrivals import Arrivals
from embedgate.perf.openloop import (STATUS_DROPPED, Dispatcher, OpenLoopGenerator,
                                     run_processes)
from embedgate.perf.overhead import trivial_server
from raw_http import RawHTTP


class FakeClock:
    """Virtual time: sleepers wait in a queue; when every task is blocked, the clock jumps to
    the earliest wake-up (a discrete-event simulation on the asyncio loop)."""

    def __init__(self):
        self.t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future]] = []
        self._seq = 0

    def __call__(self) -> float:
        return self.t

    async def until(self, when: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, self._seq, future))
        self._seq += 1
        await future

    async def drive(self, main) -> None:
        task = asyncio.ensure_future(main)
        while True:
            for _ in range(20):  # let every runnable task run until it blocks
                await asyncio.sleep(0)
            if task.done():
                return task.result()
            if not self._sleepers:
                raise RuntimeError("deadlock: nothing sleeps and the run is not done")
            when, _, future = heapq.heappop(self._sleepers)
            self.t = max(self.t, when)
            future.set_result(None)


def run_dispatch(offsets, *, hold_s, cap, on_full):
    clock = FakeClock()
    sent = {}

    async def send(i):
        sent[i] = clock()
        await clock.until(clock() + hold_s)

    d = Dispatcher(offsets, max_in_flight=cap, on_full=on_full, clock=clock,
                   sleep_until=clock.until)
    asyncio.run(clock.drive(d.run(0.0, send)))
    return d, sent


def test_dispatcher_sends_each_request_at_its_scheduled_time():
    offsets = [0.0, 0.01, 0.025, 0.03]
    d, sent = run_dispatch(offsets, hold_s=0.1, cap=64, on_full="queue")
    assert [sent[i] for i in range(4)] == offsets  # sent before earlier answers came back
    assert d.peak_in_flight == 4 and not any(d.waited) and not any(d.dropped)


def test_dispatcher_at_the_cap_queues_requests_late_and_counts_them():
    # cap 1, each answer takes 50 ms, one due every 10 ms: sends at 0, 50, 100, 150 ms
    d, sent = run_dispatch([0.0, 0.01, 0.02, 0.03], hold_s=0.05, cap=1, on_full="queue")
    assert [sent[i] for i in range(4)] == pytest.approx([0.0, 0.05, 0.10, 0.15])
    assert d.waited == [False, True, True, True] and d.peak_in_flight == 1


def test_dispatcher_counts_every_request_the_cap_held_back():
    # two slots; both held 100 ms; four more due meanwhile: all four were held back by the cap
    d, sent = run_dispatch([0.0, 0.0, 0.01, 0.02, 0.03, 0.04], hold_s=0.1, cap=2,
                           on_full="queue")
    assert d.waited == [False, False, True, True, True, True]
    assert [sent[i] for i in range(6)] == pytest.approx([0, 0, 0.1, 0.1, 0.2, 0.2])


def test_dispatcher_at_the_cap_drops_requests_and_counts_them():
    d, sent = run_dispatch([0.0, 0.01, 0.02, 0.06], hold_s=0.05, cap=1, on_full="drop")
    assert d.dropped == [False, True, True, False]
    assert sorted(sent) == [0, 3] and sent[3] == pytest.approx(0.06)


def test_dispatcher_refuses_a_bad_cap_or_policy():
    with pytest.raises(ValueError, match="max_in_flight"):
        Dispatcher([0.0], max_in_flight=0)
    with pytest.raises(ValueError, match="on_full"):
        Dispatcher([0.0], on_full="retry")


@pytest.fixture(scope="module")
def echo_url():
    with trivial_server(echo_max_tokens=64) as url:
        yield url


def test_open_loop_run_answers_every_request_and_latency_counts_from_the_schedule(echo_url):
    n = 300
    offsets = Arrivals("poisson", 1500.0, seed=1).offsets(n)
    with OpenLoopGenerator(echo_url, "m") as gen:
        requests = [gen.prepare(" ".join(["w"] * (1 + i % 5))) for i in range(n)]
        result = gen.run_schedule(requests, offsets)
    assert result.ok.all() and (result.status == 200).all() and result.errors == []
    assert (result.lag_s >= 0).all()  # never sent before its time
    # latency = scheduled -> answer = lag + service, request by request
    assert np.allclose(result.latency_s, result.lag_s + result.service_s)
    assert result.tokens.tolist() == [(1 + i % 5) + 2 for i in range(n)]  # in request order
    fig = openloop.figures(result)
    assert fig["requests_answered"] == n and fig["requests_dropped"] == 0
    assert fig["achieved_rps"] > 0 and fig["schedule_lag_p99_ms"] >= 0


def test_open_loop_failed_answers_are_counted_not_hidden(echo_url):
    with OpenLoopGenerator(echo_url, "m") as gen:
        requests = [gen.prepare("ok text"), gen.prepare(" ".join(["w"] * 100))]  # 2nd: HTTP 400
        result = gen.run_schedule(requests, [0.0, 0.001])
    assert result.ok.tolist() == [True, False] and result.status.tolist() == [200, 400]
    fig = openloop.figures(result)
    assert fig["requests_failed"] == 1 and "HTTP 400" in fig["errors"][0]


class HeldHTTP(RawHTTP):
    """Answers every request only once `release` is set (set by a timer after the first one)."""

    BODY = b'{"data":[{"index":0,"embedding":[1.0]}],"usage":{"prompt_tokens":3}}'

    def __init__(self, hold_s: float):
        self.release = threading.Event()
        self.hold_s = hold_s
        self.received = 0
        super().__init__()

    def answer(self, conn):
        self.received += 1
        if self.received == 1:
            threading.Timer(self.hold_s, self.release.set).start()
        self.release.wait()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(self.BODY), self.BODY))
        return True


@pytest.mark.parametrize("on_full", ["drop", "queue"])
def test_open_loop_cap_drops_or_delays_requests_while_the_server_holds(on_full):
    # 10 requests due within 9 ms; the server holds every answer 1 s after the first arrives
    server = HeldHTTP(hold_s=1.0)
    try:
        with OpenLoopGenerator(server.url, "m") as gen:
            requests = [gen.prepare("x") for _ in range(10)]
            result = gen.run_schedule(requests, [i * 0.001 for i in range(10)], max_in_flight=2,
                                      on_full=on_full)
    finally:
        server.close()
    fig = openloop.figures(result)
    if on_full == "drop":
        assert fig["requests_dropped"] == 8 and (result.status == STATUS_DROPPED).sum() == 8
        assert fig["requests_answered"] == 2
    else:
        assert fig["requests_dropped"] == 0 and fig["requests_answered"] == 10
        assert fig["requests_waited_for_slot"] == 8 and fig["requests_late"] == 8
        assert (result.lag_s[2:] > 0.5).all()  # sent after the hold, late by its length
    assert fig["concurrency_peak"] == 2


def test_several_processes_share_one_schedule_and_merge_by_index(echo_url):
    n = 400
    with OpenLoopGenerator(echo_url, "m") as gen:
        requests = [gen.prepare(" ".join(["w"] * (1 + i % 7))) for i in range(n)]
    offsets = Arrivals("constant", 4000.0).offsets(n)
    result = run_processes(echo_url, "m", requests, offsets, processes=2)
    assert result.processes == 2 and result.ok.all()
    assert result.tokens.tolist() == [(1 + i % 7) + 2 for i in range(n)]
    assert (result.lag_s >= 0).all()
