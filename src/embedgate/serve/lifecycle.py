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
from typing import Callable

import httpx
import psutil

from embedgate.serve.backends import redact
from embedgate.serve.client import auth_headers

LOG_TAIL_LINES = 50
LOG_SCAN_LINES = 400  # lines searched for a known cause: a traceback can push it out of the tail
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


def die_with_parent() -> None:  # runs in the child between fork and exec
    """Linux: the server gets SIGTERM if the kit's process dies, even by SIGKILL."""
    if _LIBC is not None and hasattr(_LIBC, "prctl"):
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_process_group(proc: subprocess.Popen, grace_s: float = TERM_GRACE_S) -> None:
    """SIGTERM the group a helper process leads (start_new_session), wait, then SIGKILL the
    group (stragglers too, after the leader has exited)."""
    if proc.poll() is None:
        EmbeddingServer._signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    EmbeddingServer._signal_group(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass


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
                health_path: str = "/health", health_optional: bool = False) -> str | None:
    """None when the server is ready, else what is missing (kept for the timeout message).

    health_path comes from the backend's behaviour table (embedgate.serve.behaviours).
    health_optional: some OpenAI-compatible servers have no health route; /v1/models decides then.
    """
    try:
        health = client.get(base_url + health_path)
        if health.status_code != 200 and not (health_optional and health.status_code == 404):
            return f"GET {health_path} -> {health.status_code}"
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
    # Every process of the server's tree at ready (the engine's children too), so that whoever
    # holds only this record (an xdist worker, a test) can tell a death or a leak.
    pids_at_ready: list[int] = field(default_factory=list)
    # The dtype the server computes in (vLLM and hf run float32 on CPU whatever the profile
    # says); None when unknown (an external server). It sets the api suite's tolerance.
    served_dtype: str | None = None
    # A member of a topology (serve.fleet): "replica 2 of 2", "balancer"; None for one server.
    role: str | None = None
    # A topology's members at ready, one dict each (role, base_url, pid, pids_at_ready,
    # rss_at_ready_bytes, log_path): memory per replica, and who to blame for a death.
    members: list[dict] = field(default_factory=list)

    def pids(self) -> list[int]:
        """The server's live process tree now (the engine may spawn workers after ready)."""
        return [p.pid for p in process_tree(self.pid)] if self.pid else []


class EmbeddingServer:
    """A server process the kit owns. Use as a context manager: ``with server: ...``."""

    def __init__(self, info: ServerInfo, command: list[str], env: dict[str, str], *,
                 startup_timeout: float, api_key: str | None = None,
                 poll_interval: float = POLL_INTERVAL_S, term_grace: float = TERM_GRACE_S,
                 health_path: str = "/health",
                 explain: Callable[[str], list[str]] | None = None,
                 secret_files: dict[Path, str] | None = None):
        """explain(log text) gives "cause: ..." lines for a start failure (the backend's
        behaviour table); secret_files (path -> text) are written 0600 before launch and
        removed at stop."""
        self.info = info
        self.command = command
        self.env = env
        self.startup_timeout = startup_timeout
        self.api_key = api_key
        self.poll_interval = poll_interval
        self.term_grace = term_grace
        self.health_path = health_path
        self.explain = explain
        self.secret_files = dict(secret_files or {})
        self.proc: subprocess.Popen | None = None
        self._t0 = 0.0
        self._known: dict[int, psutil.Process] = {}
        self._at_ready: dict[int, tuple[psutil.Process, str]] = {}
        self._stop_lock = threading.Lock()
        self.info.command = [redact(a, self._secrets) for a in command]

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.api_key,) if self.api_key else ()

    _secrets = secrets

    def __enter__(self) -> ServerInfo:
        self.start()
        return self.info

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- launch -----------------------------------------------------------------------------
    def start(self) -> ServerInfo:
        self.launch()
        return self.wait_until_ready()

    def launch(self) -> None:
        """Start the process, without waiting. Call it from a thread that outlives the server:
        the parent-death signal (PR_SET_PDEATHSIG) fires when the forking *thread* ends."""
        log_path = self.info.log_path
        assert log_path is not None
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if "TMPDIR" in self.env:
            Path(self.env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
        self._t0 = time.monotonic()
        with _LIVE_LOCK:  # registered before it exists, so an interrupt here still cleans up
            _LIVE.add(self)
        try:
            _write_private(self.secret_files)
            with log_path.open("w") as log:
                log.write("$ " + " ".join(self.info.command) + "\n")
                log.flush()
                self.proc = subprocess.Popen(
                    self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, **self.env}, start_new_session=True,
                    preexec_fn=die_with_parent)
        except OSError as exc:
            self.stop()
            raise ServerStartError(self._failure(f"could not be started ({exc})")) from None
        self.info.pid = self.proc.pid

    def wait_until_ready(self) -> ServerInfo:
        """Wait for readiness (any thread); on failure the server is stopped and the error
        carries its log tail."""
        t0 = self._t0
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.info.startup_s = time.monotonic() - t0
        self._remember_tree()
        self._at_ready = {pid: (proc, _name(proc)) for pid, proc in self._known.items()}
        self.info.pids_at_ready = sorted(self._at_ready)
        self.info.rss_at_ready_bytes = tree_rss_bytes(self.proc.pid)
        return self.info

    def gone_since_ready(self) -> dict[int, str]:
        """{pid: process name} of the processes the server had at ready that are gone now."""
        return {pid: name for pid, (proc, name) in self._at_ready.items() if not _alive(proc)}

    def _wait_ready(self, t0: float) -> None:
        last = "no answer yet"
        with httpx.Client(timeout=5.0, headers=auth_headers(self.api_key)) as client:
            while True:
                code = self.proc.poll()
                if code is not None:
                    raise ServerStartError(self._failure(
                        f"exited with code {code} after {time.monotonic() - t0:.1f} s "
                        f"before it was ready"))
                last = self.probe(client)
                if last is None:
                    return
                if time.monotonic() - t0 > self.startup_timeout:
                    raise ServerStartError(self._failure(
                        f"timed out after {self.startup_timeout:g} s waiting to be ready "
                        f"(last probe: {last})"))
                time.sleep(self.poll_interval)

    def probe(self, client: httpx.Client) -> str | None:
        """None when ready, else what is missing (a balancer overrides it: serve.fleet)."""
        return probe_ready(client, self.info.base_url, self.info.served_name,
                           health_path=self.health_path)

    def member_for(self, gone: dict[int, str]) -> "EmbeddingServer":
        """The server whose processes are `gone` (a topology holds several)."""
        return self

    def _failure(self, what: str) -> str:
        tail = log_tail(self.info.log_path)
        causes = self.explain(log_tail(self.info.log_path, LOG_SCAN_LINES)) if self.explain else []
        role = f" ({self.info.role})" if self.info.role else ""
        return redact(
            f"{self.info.backend} server{role} for model {self.info.model!r} {what} "
            f"(pid {self.info.pid}).\n"
            + "".join(line + "\n" for line in causes)
            + f"command: {' '.join(self.info.command)}\n"
            f"log: {self.info.log_path}\n"
            f"--- last {LOG_TAIL_LINES} log lines ---\n{tail}", self._secrets)

    # -- teardown ---------------------------------------------------------------------------
    def _remember_tree(self) -> None:
        if self.proc:
            for proc in process_tree(self.proc.pid):
                self._known[proc.pid] = proc

    def stop(self) -> None:
        """SIGTERM the group, wait, SIGKILL the group and stragglers; safe to call twice, and
        from two threads (a watchdog and the session's teardown)."""
        with self._stop_lock:
            self._stop()

    def _stop(self) -> None:
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
        for path in self.secret_files:
            path.unlink(missing_ok=True)
        self._scrub_log()
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def _scrub_log(self) -> None:
        """Engines log their settings at startup (SGLang logs `server_args=` with its api_key,
        sglang/srt/entrypoints/engine.py:311): the kept log must not hold the key."""
        path = self.info.log_path
        if not self._secrets or path is None or not path.is_file():
            return
        text = path.read_text(errors="replace")
        if any(secret in text for secret in self._secrets):
            path.write_text(redact(text, self._secrets))

    def survivors(self) -> list[int]:
        """PIDs of every process this server was seen to have that is still running."""
        return [pid for pid, proc in self._known.items() if _alive(proc)]

    @staticmethod
    def _signal_group(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _write_private(files: dict[Path, str]) -> None:
    """Each file readable by this user only (it may hold the API key)."""
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(text)
def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return "?"


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class ExternalServer:
    """A server someone else runs: readiness is checked, nothing is launched or stopped."""

    def __init__(self, info: ServerInfo, *, startup_timeout: float, api_key: str | None = None,
                 health_path: str = "/health"):
        self.info = info
        self.startup_timeout = startup_timeout
        self.api_key = api_key
        self.health_path = health_path

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
                                   health_path=self.health_path, health_optional=True)
                if last is None:
                    self.info.startup_s = 0.0
                    return self.info
                time.sleep(POLL_INTERVAL_S)
        raise ServerStartError(redact(
            f"external server at {self.info.base_url} was not ready: timed out after "
            f"{self.startup_timeout:g} s (last probe: {last}). Pass the served model name with "
            f"--embedgate-model or a profile whose served_name matches.", (self.api_key or "",)))

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
