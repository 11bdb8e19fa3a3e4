"""A trivial local embeddings server: one canned answer, no model, no framework.

It exists to measure the load generator's own cost per request (issue 5: the client must not be
the bottleneck). It answers every POST with the same realistic body (one float embedding of the
profile's dimension plus usage), as fast as an asyncio protocol can, so what is left of a round
trip is the client's work. Run: ``python -m embedgate.perf.trivial_server --port P [--cpu N]``.

GET /health and /v1/models answer as a ready server's do (``--served-name``), so the kit can
run its suites against it as an external server. ``--service-ms`` serves one request at a time
(a FIFO queue), so the server saturates at a known rate: the kit's capacity tests find it.
``--echo`` makes it a stand-in embeddings server for the kit's own tests: one small embedding per
input, ``usage.prompt_tokens`` = words + 2 per input, and HTTP 400 for an input over
``--max-tokens`` (as vLLM refuses inputs longer than the model). ``--leak-bytes N`` makes it keep
N bytes per request for good: the leaking server the soak scenario must fail.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import signal
import struct
import sys

_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


def canned_body(dim: int, tokens: int = 8) -> bytes:
    vector = [round(((i * 7919) % 1000) / 1000.0 - 0.5, 6) for i in range(dim)]
    return json.dumps({"object": "list", "model": "trivial",
                       "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                       "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                      separators=(",", ":")).encode()


def canned_response(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


_ECHO_BASE64 = base64.b64encode(struct.pack("<2f", 0.6, 0.8)).decode()


def echo_response(request_body: bytes, max_tokens: int) -> bytes:
    """An embeddings answer shaped by the request (the --echo mode)."""
    try:
        request = json.loads(request_body)
        inputs = request["input"]
    except (ValueError, KeyError, TypeError):
        inputs, request = None, {}
    items = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(items, list) or not items:
        return _json_response(400, {"error": {"message": "input must be text or texts"}})
    counts = [len(str(t).split()) + 2 for t in items]
    if max(counts) > max_tokens:
        return _json_response(400, {"error": {"message": f"input has {max(counts)} tokens, "
                                                         f"more than {max_tokens}"}})
    vector: object = [0.6, 0.8]
    if request.get("encoding_format") == "base64":
        vector = _ECHO_BASE64
    data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(len(items))]
    return _json_response(200, {"object": "list", "model": "trivial", "data": data,
                                "usage": {"prompt_tokens": sum(counts),
                                          "total_tokens": sum(counts)}})


def _json_response(status: int, payload: dict) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    reason = {200: b"OK", 404: b"Not Found"}.get(status, b"Bad Request")
    return (b"HTTP/1.1 " + str(status).encode() + b" " + reason + b"\r\ncontent-type: "
            b"application/json\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
            + body)


_KEPT: list[bytes] = []  # --leak-bytes: what every request leaves behind


class FifoService:
    """One request at a time, `service_s` each, first come first served (--service-ms): a
    server that saturates at 1 / service_s requests/s, for the kit's capacity tests."""

    def __init__(self, service_s: float):
        self.service_s = service_s
        self.free_at = 0.0

    def answer_at(self, now: float) -> float:
        self.free_at = max(self.free_at, now) + self.service_s
        return self.free_at


def get_response(path: bytes, served_name: str) -> bytes:
    """GET /health and /v1/models as a ready OpenAI-compatible server answers; 404 otherwise."""
    if path == b"/health":
        return _json_response(200, {})
    if path == b"/v1/models":
        return _json_response(200, {"object": "list", "data": [
            {"id": served_name, "object": "model"}]})
    return _json_response(404, {"error": {"message": f"no {path.decode(errors='replace')}"}})


class _Handler(asyncio.Protocol):
    def __init__(self, response: bytes, echo_max_tokens: int | None = None,
                 fifo: FifoService | None = None, served_name: str = "trivial",
                 leak_bytes: int = 0):
        self.served_name = served_name
        self.response = response
        self.echo_max_tokens = echo_max_tokens
        self.fifo = fifo
        self.leak_bytes = leak_bytes
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            match = _LENGTH.search(self.buffer, 0, end + 2)
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buffer) < total:
                return
            head, body = self.buffer[:end], self.buffer[end + 4:total]
            self.buffer = self.buffer[total:]
            if head.startswith(b"GET "):  # readiness probes and /metrics of a stand-in server
                self.transport.write(get_response(head.split(b" ", 2)[1], self.served_name))
                continue
            if self.leak_bytes:
                _KEPT.append(b"x" * self.leak_bytes)  # written, so its pages count in RSS
            answer = (self.response if self.echo_max_tokens is None
                      else echo_response(body, self.echo_max_tokens))
            if self.fifo is None:
                self.transport.write(answer)
            else:
                loop = asyncio.get_running_loop()
                loop.call_at(self.fifo.answer_at(loop.time()), self._write, answer)

    def _write(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)


async def serve(host: str, port: int, dim: int, ready_fd: int | None,
                echo_max_tokens: int | None = None, service_ms: float | None = None,
                served_name: str = "trivial", leak_bytes: int = 0) -> None:
    loop = asyncio.get_running_loop()
    response = canned_response(canned_body(dim))
    fifo = FifoService(service_ms / 1e3) if service_ms else None
    server = await loop.create_server(
        lambda: _Handler(response, echo_max_tokens, fifo, served_name, leak_bytes), host, port,
        backlog=512)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if ready_fd is not None:
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m embedgate.perf.trivial_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--cpu", type=int, default=None, help="pin the server to this CPU")
    parser.add_argument("--ready-fd", type=int, default=None, help="write 'ready' here once bound")
    parser.add_argument("--echo", action="store_true",
                        help="answer per request: one embedding per input, usage = words + 2")
    parser.add_argument("--max-tokens", type=int, default=256, help="--echo: longest input")
    parser.add_argument("--leak-bytes", type=int, default=0,
                        help="keep this many bytes per request until exit (a leaking server)")
    parser.add_argument("--served-name", default="trivial", help="listed by GET /v1/models")
    parser.add_argument("--service-ms", type=float, default=None,
                        help="serve one request at a time, this long each (saturates at "
                             "1000 / ms requests/s)")
    args = parser.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    try:
        asyncio.run(serve(args.host, args.port, args.dim, args.ready_fd,
                          args.max_tokens if args.echo else None, args.service_ms,
                          args.served_name, args.leak_bytes))
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(0)


if __name__ == "__main__":
    main()
