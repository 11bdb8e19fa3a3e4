"""A closed-loop HTTP load generator whose own cost is small and measured.

Why not the kit's httpx client: at 64 requests in flight a thread per request spends more time in
the GIL than a small embedding model spends on a short input, and the figures would then be the
client's. This one runs N keep-alive HTTP/1.1 connections on one asyncio loop in the calling
thread, with request bytes built before timing. A request's latency runs from just before its bytes
are written to just after the last byte of the answer is read; connections are opened before the
timed window. Answers are checked (status 200 and one embedding per input) and ``usage`` tokens
are read without parsing the whole JSON body, so the checks cost microseconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import urlsplit

from embedgate.serve.client import auth_headers

_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_MAX_ERRORS_KEPT = 5


class LoadError(RuntimeError):
    """Requests failed; the load figures would be meaningless, so the scenario fails."""


@dataclass(frozen=True)
class PreparedRequest:
    """One POST /v1/embeddings, serialised before timing."""

    data: bytes
    n_inputs: int


@dataclass
class LoadResult:
    """One run: per-request latencies (in request order), wall time and the client's own cost."""

    latencies_s: list[float]
    wall_s: float
    n_inputs: int
    tokens: int | None
    client_cpu_s: float
    errors: list[str] = field(default_factory=list)
    n_errors: int = 0
    first_body: bytes | None = None

    @property
    def n_requests(self) -> int:
        return len(self.latencies_s)


# Servers close keep-alive connections idle this long (uvicorn: 5 s); the client stops reusing
# them earlier, so a request is never written into a connection the server is closing.
STALE_AFTER_S = 3.0


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.last_used = time.monotonic()

    @property
    def stale(self) -> bool:
        return time.monotonic() - self.last_used > STALE_AFTER_S

    def close(self) -> None:
        self.writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep_alive) of one HTTP/1.1 answer: Content-Length, chunked or to EOF."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ConnectionError(f"not an HTTP response: {lines[0][:80]!r}")
    status = int(parts[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    keep_alive = headers.get(b"connection", b"").lower() != b"close" and parts[0] != b"HTTP/1.0"
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return status, b"".join(chunks), keep_alive
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = headers.get(b"content-length")
    if length is not None:
        return status, await reader.readexactly(int(length)), keep_alive
    return status, await reader.read(), False  # delimited by the server closing


def count_embeddings(body: bytes) -> int:
    """Items in an embeddings answer: each has exactly one ``"index"`` key."""
    return body.count(b'"index"')


def answer_error(req: PreparedRequest, status: int, body: bytes) -> str | None:
    """Why an answer does not count as a served request (None when it does): a fast 500 or a
    short answer must never pass as a fast answer."""
    if status != 200:
        return f"HTTP {status}: {body[:300].decode(errors='replace')}"
    if count_embeddings(body) != req.n_inputs:
        return f"sent {req.n_inputs} inputs, got {count_embeddings(body)} embeddings back"
    return None


def usage_tokens(body: bytes) -> int | None:
    """prompt_tokens of the answer (usage sits at the end in OpenAI-style bodies)."""
    match = _TOKENS.search(body, max(0, len(body) - 512)) or _TOKENS.search(body)
    return int(match.group(1)) if match else None


class LoadGenerator:
    """Use as a context manager; ``run()`` blocks the calling thread until its requests are done."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 timeout_s: float = 120.0, path: str = "/v1/embeddings",
                 encoding_format: str = "float"):
        url = urlsplit(base_url)
        if url.scheme != "http":
            raise ValueError(f"the load generator speaks plain http only, not {url.scheme!r}")
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        self.path = (url.path.rstrip("/") + path) or path
        self.model = model
        self.timeout_s = timeout_s
        self.encoding_format = encoding_format
        extra = "".join(f"{k}: {v}\r\n" for k, v in auth_headers(api_key).items())
        self._head = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                      f"Content-Type: application/json\r\nAccept: application/json\r\n"
                      f"{extra}Content-Length: ").encode()
        self._loop = asyncio.new_event_loop()
        self._idle: list[_Connection] = []

    def __enter__(self) -> "LoadGenerator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        for conn in self._idle:
            conn.close()
        self._idle.clear()
        self._loop.run_until_complete(asyncio.sleep(0))  # let transports close
        self._loop.close()

    def prepare(self, inputs: Sequence[str] | str, **extra: Any) -> PreparedRequest:
        """Serialise one request body (done before timing)."""
        payload = {"model": self.model, "input": inputs, "encoding_format": self.encoding_format,
                   **extra}
        body = json.dumps(payload, separators=(",", ":")).encode()
        n = 1 if isinstance(inputs, str) else len(inputs)
        return PreparedRequest(self._head + str(len(body)).encode() + b"\r\n\r\n" + body, n)

    def warm_connections(self, count: int) -> None:
        """Open connections up to `count` outside any timed window."""
        self._loop.run_until_complete(self._open_up_to(count))

    def run(self, requests: Sequence[PreparedRequest], *, concurrency: int,
            keep_first_body: bool = False) -> LoadResult:
        """Send every request, `concurrency` in flight, closed loop (a worker sends its next
        request when its previous one is answered). A fixed request count, not a fixed time."""
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self._drop_stale()
        if len(self._idle) < min(concurrency, len(requests)):
            self.warm_connections(min(concurrency, len(requests)))
        return self._loop.run_until_complete(self._run(requests, concurrency, keep_first_body))

    def _drop_stale(self) -> None:
        for conn in [c for c in self._idle if c.stale]:
            conn.close()
            self._idle.remove(conn)

    async def _open_up_to(self, count: int) -> None:
        self._drop_stale()
        missing = count - len(self._idle)
        if missing > 0:
            opened = await asyncio.gather(*(self._connect() for _ in range(missing)))
            self._idle.extend(opened)

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=2**20), self.timeout_s)
        return _Connection(reader, writer)

    async def _run(self, requests: Sequence[PreparedRequest], concurrency: int,
                   keep_first_body: bool) -> LoadResult:
        n = len(requests)
        latencies = [0.0] * n
        tokens: list[int | None] = [None] * n
        errors: list[str] = []
        state = {"next": 0, "errors": 0, "first": None}
        workers = min(concurrency, n)
        conns = [self._idle.pop() for _ in range(min(workers, len(self._idle)))]

        async def worker(conn: _Connection | None) -> None:
            while state["next"] < n:
                i = state["next"]
                state["next"] = i + 1
                req = requests[i]
                t0 = time.perf_counter()
                try:
                    if conn is None:
                        conn = await self._connect()
                    conn.writer.write(req.data)
                    status, body, keep = await asyncio.wait_for(
                        _read_response(conn.reader), self.timeout_s)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                        asyncio.TimeoutError, ValueError) as exc:
                    latencies[i] = time.perf_counter() - t0
                    self._note(state, errors, f"request {i}: {type(exc).__name__}: {exc}")
                    if conn is not None:
                        conn.close()
                    conn = None
                    continue
                latencies[i] = time.perf_counter() - t0
                problem = answer_error(req, status, body)
                if problem:
                    self._note(state, errors, f"request {i}: {problem}")
                else:
                    tokens[i] = usage_tokens(body)
                    if keep_first_body and state["first"] is None:
                        state["first"] = body
                if not keep:
                    conn.close()
                    conn = None
            if conn is not None:
                conn.last_used = time.monotonic()
                self._idle.append(conn)

        cpu0 = time.thread_time()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(conns[k] if k < len(conns) else None)
                               for k in range(workers)))
        wall = time.perf_counter() - t0
        cpu = time.thread_time() - cpu0
        known = [t for t in tokens if t is not None]
        total_tokens = sum(known) if len(known) == n and not state["errors"] else None
        return LoadResult(latencies, wall, sum(r.n_inputs for r in requests), total_tokens, cpu,
                          errors, state["errors"], state["first"])

    @staticmethod
    def _note(state: dict, errors: list[str], message: str) -> None:
        state["errors"] += 1
        if len(errors) < _MAX_ERRORS_KEPT:
            errors.append(message)


def raise_on_errors(result: LoadResult, what: str) -> None:
    """Failed requests make latency figures lie (a fast 500 looks great): fail loudly."""
    if result.n_errors:
        shown = "\n  ".join(result.errors)
        raise LoadError(f"{what}: {result.n_errors} of {result.n_requests} requests failed; "
                        f"first ones:\n  {shown}")
