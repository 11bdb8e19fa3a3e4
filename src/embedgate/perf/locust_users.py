"""The locustfile: the kit's prepared requests as Locust users, on a master and its workers.

Run by `embedgate.perf.locust_load` (never imported by the kit: Locust monkey-patches the
standard library with gevent on import). The master reads the workload file, sends each worker
its share (in proportion to the users Locust placed there) in an ``embedgate_share`` message, and collects every
worker's per-request results (index, latency, error, tokens) from ``embedgate_results``; with
all of them in, it writes the results file and quits. A worker's users take the next request of
its share, check the answer as the in-process generator does (HTTP 200, one embedding per input)
and time it from just before the request to the last byte of the answer. Locust's own request
events fire too, so its statistics and histograms (``--csv``, the master's summary) hold the
same requests.

Workers on other machines: ``locust -f <this file> --worker --master-host HOST``; the API key,
when the server needs one, comes from EMBEDGATE_API_KEY in each worker's environment.
"""

from __future__ import annotations

import json
import os
import time
import traceback

import gevent
from gevent.event import Event
from locust import FastHttpUser, constant, events, task
from locust.runners import MasterRunner, WorkerRunner

from embedgate.perf.loadgen import PreparedRequest, answer_error, usage_tokens
from embedgate.perf.locust_load import shares

SHARE, RESULTS = "embedgate_share", "embedgate_results"
PATH = "/v1/embeddings"


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--embedgate-workload", default="", help="the workload JSON (master)")
    parser.add_argument("--embedgate-results", default="", help="where the master writes results")


class _Share:
    """This worker's requests, the next one to send, and what came back."""

    def __init__(self) -> None:
        self.ready = Event()
        self.items: list[tuple[int, str, int]] = []
        self.next = 0
        self.results: list[list] = []
        self.sent = False
        self.cpu0 = 0.0
        self.t_first: float | None = None  # wall clock of the first request sent, the last answer

    def take(self) -> tuple[int, str, int] | None:
        if self.next >= len(self.items):
            return None
        self.next += 1
        return self.items[self.next - 1]


SHARE_STATE = _Share()
COLLECTED: dict[str, dict] = {}
ENVIRONMENT: list = []  # the one Environment (spawning_complete does not pass it)


def _worker_received_share(environment, msg, **_kw) -> None:
    SHARE_STATE.items = [tuple(item) for item in msg.data["items"]]
    SHARE_STATE.cpu0 = time.process_time()
    SHARE_STATE.ready.set()


def _master_received_results(environment, msg, **_kw) -> None:
    COLLECTED[msg.data["worker"]] = msg.data
    runner = environment.runner
    expected = environment.embedgate_workers
    if len(COLLECTED) >= expected:
        _write_results(environment)
        gevent.spawn(runner.quit)


def _write_results(environment) -> None:
    """Per-request results, and Locust's own counts and response-time histogram (ms -> count):
    the master's total of the workers' periodic reports plus each worker's last, unreported
    part (sent with its results)."""
    total = environment.stats.total
    histogram = {str(ms): n for ms, n in total.response_times.items()}
    requests, failures = total.num_requests, total.num_failures
    for worker in COLLECTED.values():
        tail = worker["locust_tail"]
        requests, failures = requests + tail["num_requests"], failures + tail["num_failures"]
        for ms, n in tail["response_times"].items():
            histogram[str(ms)] = histogram.get(str(ms), 0) + n
    _write(environment, {"workers": list(COLLECTED.values()),
                         "locust": {"num_requests": requests, "num_failures": failures,
                                    "response_times_ms": histogram}})


def _write(environment, out: dict) -> None:
    path = environment.parsed_options.embedgate_results
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(out, fh)
    os.replace(tmp, path)


@events.init.add_listener
def _init(environment, **_kw) -> None:
    ENVIRONMENT.append(environment)
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.register_message(SHARE, _worker_received_share)
    elif isinstance(runner, MasterRunner):
        runner.register_message(RESULTS, _master_received_results)


@events.spawning_complete.add_listener
def _on_spawned(**_kw) -> None:
    """Once every user is placed, so each worker's share matches its users. A failure here
    ends the run at once, its traceback in the results file (no wait for --run-time)."""
    environment = ENVIRONMENT[0]
    if not isinstance(environment.runner, MasterRunner):
        return
    try:
        _send_shares(environment)
    except Exception:
        _write(environment, {"error": traceback.format_exc()})
        gevent.spawn(environment.runner.quit)


def _send_shares(environment) -> None:
    runner = environment.runner
    with open(environment.parsed_options.embedgate_workload, encoding="utf-8") as fh:
        workload = json.load(fh)
    bodies, counts = workload["bodies"], workload["n_inputs"]
    users = {client_id: node.user_count for client_id, node in runner.clients.items()}
    split = shares(len(bodies), users)
    environment.embedgate_workers = len(split)
    for client_id, indices in split.items():
        runner.send_message(SHARE, {"items": [[i, bodies[i], counts[i]] for i in indices]},
                            client_id=client_id)


class EmbeddingUser(FastHttpUser):
    """Closed loop: the next request goes out when the previous answer is in."""

    wait_time = constant(0)

    def on_start(self) -> None:
        key = os.environ.get("EMBEDGATE_API_KEY")
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"

    @task
    def embed(self) -> None:
        share = SHARE_STATE
        if not share.ready.wait(timeout=1.0):
            return
        item = share.take()
        if item is None:
            self._finish_when_all_in(share)
            gevent.sleep(0.05)
            return
        index, body, n_inputs = item
        error, tokens = None, None
        if share.t_first is None:
            share.t_first = time.time()
        t0 = time.perf_counter()
        with self.client.post(PATH, data=body, headers=self.headers, catch_response=True,
                              name=PATH) as resp:
            content = resp.content or b""
            latency = time.perf_counter() - t0
            if resp.status_code == 0:  # no answer at all (connection refused, reset, timeout)
                error = f"request {index}: {resp.error!r}"
            else:
                error = answer_error(PreparedRequest(b"", n_inputs), resp.status_code, content)
                error = error and f"request {index}: {error}"
            if error:
                resp.failure(error)
            else:
                tokens = usage_tokens(content)
                resp.success()
        share.results.append([index, latency, error, tokens])
        self._finish_when_all_in(share)

    def _finish_when_all_in(self, share: _Share) -> None:
        if share.sent or len(share.results) < len(share.items):
            return
        share.sent = True
        runner = self.environment.runner
        tail = self.environment.stats.total.get_stripped_report()  # and reset: never sent twice
        runner.send_message(RESULTS, {"worker": runner.client_id, "results": share.results,
                                      "cpu_s": time.process_time() - share.cpu0,
                                      "t_first": share.t_first, "t_last": time.time(),
                                      "locust_tail": tail})
