"""N replicas behind a balancer, launched, watched and stopped as one server under test.

Why: production serving is rarely one process. The set keeps the single server's guarantees:
ready means every replica is ready and the balancer routes an embedding request; a replica that
fails to start fails the launch with that replica's log tail (the others are stopped); teardown
stops the balancer and every replica, and `survivors` covers all their processes. The watchdog
(`serve.liveness`) sees one process set; `member_for` names the replica a death belongs to, so
its message carries that replica's log.
"""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import httpx

from embedgate.serve.backends import LOOPBACK
from embedgate.serve.lifecycle import EmbeddingServer, ServerInfo, ServerStartError, _LIVE, \
    _LIVE_LOCK, free_port

BALANCERS = ("nginx", "sglang-router")
READY_INPUT = "embedgate balancer readiness probe"
NGINX_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary() -> str:
    """nginx on PATH, else Debian's /usr/sbin/nginx (not on a normal user's PATH)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise ValueError("the nginx balancer needs nginx (Debian: apt-get install nginx-light); "
                         "or pass --embedgate-balancer sglang-router (PyPI)")
    return found


def nginx_config(port: int, worker_urls: list[str], workdir: Path) -> str:
    """A transparent HTTP/1.1 round robin over the replicas, on loopback.

    Bodies and error answers pass unchanged, so the api suite judges the replicas through it.
    No retry on another replica (proxy_next_upstream off) and no replica marked down
    (max_fails=0): a dead replica's requests are errors the kit counts. Idle connections to a
    replica are dropped after 2 s, before the replica's own keep-alive timeout (uvicorn: 5 s)
    closes them under a request that nginx would not retry. Temp files and the pid file stay in
    `workdir`; errors go to stderr (the balancer's log).
    """
    servers = "".join(f"    server {url.split('://', 1)[1]} max_fails=0;\n"
                      for url in worker_urls)
    temps = "".join(f"  {name}_temp_path {workdir / name};\n" for name in NGINX_DIRS)
    return (f"daemon off;\nworker_processes auto;\npid {workdir / 'nginx.pid'};\n"
            f"error_log stderr warn;\nevents {{ worker_connections 4096; }}\n"
            f"http {{\n  access_log off;\n{temps}  client_max_body_size 0;\n"
            f"  upstream replicas {{\n{servers}    keepalive 64;\n    keepalive_timeout 2s;\n  }}\n"
            f"  server {{\n    listen {LOOPBACK}:{port};\n    location / {{\n"
            f"      proxy_pass http://replicas;\n      proxy_http_version 1.1;\n"
            f"      proxy_set_header Connection \"\";\n      proxy_next_upstream off;\n"
            f"      proxy_read_timeout 3600s;\n      proxy_send_timeout 3600s;\n"
            f"    }}\n  }}\n}}\n")


def balancer_launch(kind: str, *, python: str, port: int, worker_urls: list[str],
                    workdir: Path) -> tuple[list[str], dict[Path, str]]:
    """(command, files to write before launch) of the balancer `kind` (one of BALANCERS)."""
    if kind == "nginx":
        conf = workdir / "nginx.conf"
        for name in NGINX_DIRS:
            (workdir / name).mkdir(parents=True, exist_ok=True)
        return ([nginx_binary(), "-p", str(workdir), "-e", "stderr", "-c", str(conf)],
                {conf: nginx_config(port, worker_urls, workdir)})
    if kind == "sglang-router":
        return sglang_router_command(python, port, worker_urls, metrics_port=free_port()), {}
    raise ValueError(f"balancer {kind!r} is not one of {', '.join(BALANCERS)}")


def sglang_router_command(python: str, port: int, worker_urls: list[str],
                          metrics_port: int) -> list[str]:
    """sglang-router (PyPI `sglang-router`, a Rust binary) in round-robin over the replicas.

    Retries and the circuit breaker are off, so that a request sent to a dead replica is an
    error the kit counts, not one hidden by a retry elsewhere, and a replica's 4xx answers (the
    api suite sends many) never close its circuit; its Prometheus listener gets a free loopback
    port (the default 29000 would clash between two balancers on one machine). It parses each
    request body itself: a body of the wrong types gets its own 422, not the replica's answer.
    """
    return [python, "-m", "sglang_router.launch_router",
            "--host", LOOPBACK, "--port", str(port),
            "--worker-urls", *worker_urls,
            "--policy", "round_robin",
            "--disable-retries", "--disable-circuit-breaker",
            "--prometheus-host", LOOPBACK, "--prometheus-port", str(metrics_port)]


class Balancer(EmbeddingServer):
    """The balancer process: ready when /health answers and an embedding request is routed.

    Its own /v1/models need not list the served name (sglang-router lists its own model id),
    so readiness is proven by a routed request instead.
    """

    def probe(self, client: httpx.Client) -> str | None:
        base = self.info.base_url
        try:
            health = client.get(base + self.health_path)
            if health.status_code != 200:
                return f"GET {self.health_path} -> {health.status_code}"
            answer = client.post(base + "/v1/embeddings",
                                 json={"model": self.info.served_name, "input": READY_INPUT})
            if answer.status_code != 200:
                return f"POST /v1/embeddings -> {answer.status_code}"
            if not answer.json().get("data"):
                return "POST /v1/embeddings answered without data"
        except httpx.HTTPError as exc:
            return type(exc).__name__
        except (ValueError, AttributeError):
            return "POST /v1/embeddings did not answer JSON"
        return None


class Fleet:
    """Replicas and their balancer as one server: the same interface as EmbeddingServer."""

    def __init__(self, info: ServerInfo, replicas: list[EmbeddingServer], balancer: Balancer):
        if not replicas:
            raise ValueError("a fleet needs at least one replica")
        self.info = info
        self.replicas = replicas
        self.balancer = balancer
        self._stop_lock = threading.Lock()

    @property
    def members(self) -> list[EmbeddingServer]:
        return [*self.replicas, self.balancer]

    @property
    def proc(self):
        return self.balancer.proc

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.balancer.secrets

    def __enter__(self) -> ServerInfo:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> ServerInfo:
        with _LIVE_LOCK:  # the at-exit sweep stops the whole set
            _LIVE.add(self)
        t0 = time.monotonic()
        try:
            self._start_replicas()
            self.balancer.start()
        except BaseException:
            self.stop()
            raise
        self._fill_info()
        self.info.startup_s = time.monotonic() - t0
        return self.info

    def _start_replicas(self) -> None:
        """All replicas at once; the first to fail is the one reported (the others are stopped,
        so they fail after it). Launched from this thread, which outlives them; only the waits
        run in the pool."""
        for r in self.replicas:
            r.launch()
        with ThreadPoolExecutor(max_workers=len(self.replicas),
                                thread_name_prefix="embedgate-replica") as pool:
            futures = [pool.submit(r.wait_until_ready) for r in self.replicas]
            errors = []
            try:
                for future in as_completed(futures):
                    try:
                        future.result()
                    except ServerStartError as exc:
                        errors.append(exc)
                        self._stop_replicas()  # no wait for the others' timeouts
            except BaseException:  # Ctrl-C: the waits end once their servers are gone
                self._stop_replicas()
                raise
        if errors:
            raise ServerStartError(str(errors[0])) from None

    def _stop_replicas(self) -> None:
        for replica in self.replicas:
            replica.stop()

    def _fill_info(self) -> None:
        members = [member_record(m.info) for m in self.members]
        self.info.members = members
        self.info.pid = self.balancer.info.pid
        self.info.pids_at_ready = sorted(p for m in members for p in m["pids_at_ready"])
        self.info.rss_at_ready_bytes = sum(m["rss_at_ready_bytes"] or 0 for m in members)
        self.info.command = self.balancer.info.command

    def gone_since_ready(self) -> dict[int, str]:
        gone: dict[int, str] = {}
        for member in self.members:
            gone.update(member.gone_since_ready())
        return gone

    def member_for(self, gone: dict[int, str]) -> EmbeddingServer:
        for member in self.members:
            if set(gone) & set(member.info.pids_at_ready):
                return member
        return self.balancer

    def stop(self) -> None:
        """The balancer first (no new request reaches a replica), then every replica at once."""
        with self._stop_lock:
            self.balancer.stop()
            with ThreadPoolExecutor(max_workers=len(self.replicas)) as pool:
                list(pool.map(lambda r: r.stop(), self.replicas))
            with _LIVE_LOCK:
                _LIVE.discard(self)

    def survivors(self) -> list[int]:
        return sorted(p for m in self.members for p in m.survivors())


def member_record(info: ServerInfo) -> dict:
    """What a report or an xdist worker keeps of one member (plain JSON values)."""
    return {"role": info.role, "base_url": info.base_url, "pid": info.pid,
            "pids_at_ready": list(info.pids_at_ready),
            "rss_at_ready_bytes": info.rss_at_ready_bytes,
            "log_path": str(info.log_path) if info.log_path else None}


def member_log(directory: Path, backend: str, stamp: str, role: str) -> Path:
    """server-<backend>-<stamp>-<role>.log, so each member's log is found by its name."""
    return directory / f"server-{backend}-{stamp}-{role.replace(' ', '-')}.log"
