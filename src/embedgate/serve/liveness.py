"""Is the server still there after ready? A watchdog for launched servers, a probe for others.

Why: readiness is checked once. An engine that dies later (the OOM killer, a segfault) otherwise
shows up as connection errors, or as requests that wait out their timeout, test after test.

`Watchdog` checks every process a launched server had at ready (vLLM: the API server, its
engine core and the engine's worker). At the first death it waits a few seconds for the server
process to exit on its own (to report its exit code), stops whatever is left of the tree, so that
no request can wait on a half-dead server, and hands a message (who died, the exit code, the log
tail) to its callback. `unreachable` is the check for a server the kit did not launch: after a
failed test, does it still answer at all?
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import httpx

from embedgate.serve.backends import redact
from embedgate.serve.client import auth_headers
from embedgate.serve.lifecycle import LOG_TAIL_LINES, EmbeddingServer, log_tail

CHECK_INTERVAL_S = 0.5
EXIT_GRACE_S = 3.0  # vLLM's API server exits ~0.6 s after losing its engine (2-core CPU)


def death_message(server: EmbeddingServer, gone: dict[int, str], exit_code: int | None,
                  waited_s: float) -> str:
    """One paragraph: what died, how the server process ended, where the log is, its tail."""
    info = server.info
    role = f" ({info.role})" if info.role else ""
    who = ", ".join(f"{pid} ({name})" for pid, name in sorted(gone.items()))
    if exit_code is not None:
        ended = f"the server process {info.pid} exited with code {exit_code}"
    else:
        ended = (f"the server process {info.pid} was still running {waited_s:.0f} s later and "
                 f"was stopped by the kit")
    return redact(
        f"embedgate: the {info.backend} server{role} for model {info.model!r} died during the "
        f"session: process(es) {who} gone; {ended}.\n"
        f"log: {info.log_path}\n"
        f"--- last {LOG_TAIL_LINES} log lines ---\n{log_tail(info.log_path)}",
        server.secrets)


def headline(message: str) -> str:
    """The first line of a death message (what `session.shouldstop` shows)."""
    return message.splitlines()[0]


class Watchdog:
    """Checks a launched server's processes every `interval` s from a daemon thread.

    `check()` may also be called from any thread (after a failed test, say); the first death is
    reported once, to `on_death`, and `message` keeps it.
    """

    def __init__(self, server: EmbeddingServer, on_death: Callable[[str], None] | None = None,
                 *, interval: float = CHECK_INTERVAL_S, exit_grace: float = EXIT_GRACE_S,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.server = server
        self.on_death = on_death
        self.interval, self.exit_grace = interval, exit_grace
        self.clock, self.sleep = clock, sleep
        self.message: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Watchdog":
        self._thread = threading.Thread(target=self._run, daemon=True, name="embedgate-watchdog")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (before a deliberate teardown, which is not a death)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.interval + self.exit_grace + 1)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.check() is not None:
                return

    def check(self) -> str | None:
        """None while every process of the server at ready runs; else the death message."""
        with self._lock:
            if self.message is not None or self._stop.is_set():
                return self.message
            gone = self.server.gone_since_ready()
            if not gone:
                return None
            dead = self.server.member_for(gone)  # a topology: the replica that died
            start = self.clock()
            code = dead.proc.poll() if dead.proc else None
            while code is None and self.clock() - start < self.exit_grace:
                self.sleep(min(0.1, self.exit_grace))
                code = dead.proc.poll()
            waited = self.clock() - start
            self.server.stop()  # what is left of the tree: no request may wait on it
            self.message = death_message(dead, gone, code, waited)
        if self.on_death is not None:
            self.on_death(self.message)
        return self.message


def unreachable(base_url: str, *, api_key: str | None = None, timeout: float = 2.0) -> str | None:
    """Why a server that was ready no longer answers at all (a connection error), else None.

    Any HTTP answer, even a 5xx, means it is there: judging answers is the suites' business.
    """
    try:
        with httpx.Client(timeout=timeout, headers=auth_headers(api_key)) as client:
            client.get(base_url + "/v1/models")
    except httpx.HTTPError as exc:
        return (f"embedgate: the server at {base_url} stopped answering during the session "
                f"({type(exc).__name__}: {exc})")
    return None
