"""Launch an embedding server, wait until it is ready, and always tear it down.

Ready means: the process is alive, the health endpoint answers 200 and ``/v1/models`` lists the
served name. An early exit fails at once with the exit code and the log tail; no readiness within
the timeout fails with "timed out after N s". Teardown sends SIGTERM to the server's own process
group, waits, then SIGKILLs the group and any descendant that left it. Every live server is also
registered for an at-exit / SIGTERM sweep, so no path leaves an orphan.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from embedgate.backends import redact
from embedgate.client import auth_headers

LOG_TAIL_LINES = 50
TERM_GRACE_S = 10.0
POLL_INTERVAL_S = 0.5

_LIVE: set["EmbeddingServer"] = set()
_LIVE_LOCK = threading.Lock()


class ServerStartError(RuntimeError):
    """The server exited, or was not ready in time; the message carries the log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("r", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines))
    except FileNotFoundError:
        return "(no log written)"


try:
    _LIBC = ctypes.CDLL(None, use_errno=True)  # loaded in the parent: the child only calls it
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """Linux: the server gets SIGTERM if the kit's process dies, even by SIGKILL."""
    if _LIBC is not None and hasattr(_LIBC, "prctl"):
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss_bytes(pid: int) -> int:
    total = 0
    for proc in process_tree(pid):
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def probe_ready(client: httpx.Client, base_url: str, served_name: str, *,
                health_optional: bool = False) -> str | None:
    """None when the server is ready, else what is missing (kept for the timeout message).

    health_optional: some OpenAI-compatible servers have no /health; /v1/models decides then.
    """
    try:
        health = client.get(base_url + "/health")
        if health.status_code != 200 and not (health_optional and health.status_code == 404):
            return f"GET /health -> {health.status_code}"
        models = client.get(base_url + "/v1/models")
        if models.status_code != 200:
            return f"GET /v1/models -> {models.status_code}"
        ids = [m.get("id") for m in models.json().get("data", [])]
    except httpx.HTTPError as exc:
        return type(exc).__name__
    except (ValueError, AttributeError):
        return "GET /v1/models did not return an OpenAI model list"
    return None if served_name in ids else f"/v1/models lists {ids}, not {served_name!r}"


@dataclass
class ServerInfo:
    """What tests and reports may know about the server under test (never the API key)."""

    backend: str
    base_url: str
    served_name: str
    model: str
    version: str | None = None
    log_path: Path | None = None
    pid: int | None = None
    startup_s: float | None = None
    rss_at_ready_bytes: int | None = None
    command: list[str] = field(default_factory=list)

    def pids(self) -> list[int]:
        """The server's live process tree now (the engine may spawn workers after ready)."""
        return [p.pid for p in process_tree(self.pid)] if self.pid else []


class EmbeddingServer:
    """A server process the kit owns. Use as a context manager: ``with server: ...``."""

    def __init__(self, info: ServerInfo, command: list[str], env: dict[str, str], *,
                 startup_timeout: float, api_key: str | None = None,
                 poll_interval: float = POLL_INTERVAL_S, term_grace: float = TERM_GRACE_S):
        self.info = info
        self.command = command
        self.env = env
        self.startup_timeout = startup_timeout
        self.api_key = api_key
        self.poll_interval = poll_interval
        self.term_grace = term_grace
        self.proc: subprocess.Popen | None = None
        self._known: dict[int, psutil.Process] = {}
        self.info.command = [redact(a, self._secrets) for a in command]

    @property
    def _secrets(self) -> tuple[str, ...]:
        return (self.api_key,) if self.api_key else ()

    def __enter__(self) -> ServerInfo:
        self.start()
        return self.info

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- launch -----------------------------------------------------------------------------
    def start(self) -> ServerInfo:
        log_path = self.info.log_path
        assert log_path is not None
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if "TMPDIR" in self.env:
            Path(self.env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with _LIVE_LOCK:  # registered before it exists, so an interrupt here still cleans up
            _LIVE.add(self)
        with log_path.open("w") as log:
            log.write("$ " + " ".join(self.info.command) + "\n")
            log.flush()
            self.proc = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **self.env}, start_new_session=True,
                preexec_fn=_die_with_parent)
        self.info.pid = self.proc.pid
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.info.startup_s = time.monotonic() - t0
        self._remember_tree()
        self.info.rss_at_ready_bytes = tree_rss_bytes(self.proc.pid)
        return self.info

    def _wait_ready(self, t0: float) -> None:
        last = "no answer yet"
        with httpx.Client(timeout=5.0, headers=auth_headers(self.api_key)) as client:
            while True:
                code = self.proc.poll()
                if code is not None:
                    raise ServerStartError(self._failure(
                        f"exited with code {code} after {time.monotonic() - t0:.1f} s "
                        f"before it was ready"))
                last = probe_ready(client, self.info.base_url, self.info.served_name)
                if last is None:
                    return
                if time.monotonic() - t0 > self.startup_timeout:
                    raise ServerStartError(self._failure(
                        f"timed out after {self.startup_timeout:g} s waiting to be ready "
                        f"(last probe: {last})"))
                time.sleep(self.poll_interval)

    def _failure(self, what: str) -> str:
        tail = log_tail(self.info.log_path)
        return redact(
            f"{self.info.backend} server for model {self.info.model!r} {what}.\n"
            f"command: {' '.join(self.info.command)}\n"
            f"log: {self.info.log_path}\n"
            f"--- last {LOG_TAIL_LINES} log lines ---\n{tail}", self._secrets)

    # -- teardown ---------------------------------------------------------------------------
    def _remember_tree(self) -> None:
        if self.proc:
            for proc in process_tree(self.proc.pid):
                self._known[proc.pid] = proc

    def stop(self) -> None:
        """SIGTERM the group, wait, SIGKILL the group and stragglers; safe to call twice."""
        proc = self.proc
        if proc is not None:
            self._remember_tree()
            if proc.poll() is None:
                self._signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=self.term_grace)
                except subprocess.TimeoutExpired:
                    pass
            self._signal_group(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=self.term_grace)
            except subprocess.TimeoutExpired:
                pass
            survivors = [self._known[pid] for pid in self.survivors()]
            for p in survivors:  # a worker that left the group (setsid) still goes
                try:
                    p.kill()
                except psutil.Error:
                    pass
            psutil.wait_procs(survivors, timeout=self.term_grace)
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def survivors(self) -> list[int]:
        """PIDs of every process this server was seen to have that is still running."""
        return [pid for pid, proc in self._known.items() if _alive(proc)]

    @staticmethod
    def _signal_group(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class ExternalServer:
    """A server someone else runs: readiness is checked, nothing is launched or stopped."""

    def __init__(self, info: ServerInfo, *, startup_timeout: float, api_key: str | None = None):
        self.info = info
        self.startup_timeout = startup_timeout
        self.api_key = api_key

    def __enter__(self) -> ServerInfo:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> ServerInfo:
        t0 = time.monotonic()
        last = "no answer yet"
        with httpx.Client(timeout=5.0, headers=auth_headers(self.api_key)) as client:
            while time.monotonic() - t0 <= self.startup_timeout:
                last = probe_ready(client, self.info.base_url, self.info.served_name,
                                   health_optional=True)
                if last is None:
                    self.info.startup_s = 0.0
                    return self.info
                time.sleep(POLL_INTERVAL_S)
        raise ServerStartError(redact(
            f"external server at {self.info.base_url} was not ready: timed out after "
            f"{self.startup_timeout:g} s (last probe: {last}). Pass the served model name with "
            f"--model or a profile whose served_name matches.", (self.api_key or "",)))

    def stop(self) -> None:
        return None

    def survivors(self) -> list[int]:
        return []


def stop_all() -> None:
    """Stop every server this process launched (at exit, on SIGTERM, on internal errors)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for server in live:
        server.stop()


atexit.register(stop_all)
