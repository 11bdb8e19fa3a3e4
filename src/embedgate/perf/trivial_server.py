"""A trivial local embeddings server: one canned answer, no model, no framework.

It exists to measure the load generator's own cost per request (issue 5: the client must not be
the bottleneck). It answers every POST with the same realistic body (one float embedding of the
profile's dimension plus usage), as fast as an asyncio protocol can, so what is left of a round
trip is the client's work. Run: ``python -m embedgate.perf.trivial_server --port P [--cpu N]``.

``--echo`` makes it a stand-in embeddings server for the kit's own tests: one small embedding per
input, ``usage.prompt_tokens`` = words + 2 per input, and HTTP 400 for an input over
``--max-tokens`` (as vLLM refuses inputs longer than the model).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
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


def echo_response(request_body: bytes, max_tokens: int) -> bytes:
    """An embeddings answer shaped by the request (the --echo mode)."""
    try:
        inputs = json.loads(request_body)["input"]
    except (ValueError, KeyError, TypeError):
        inputs = None
    items = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(items, list) or not items:
        return _json_response(400, {"error": {"message": "input must be text or texts"}})
    counts = [len(str(t).split()) + 2 for t in items]
    if max(counts) > max_tokens:
        return _json_response(400, {"error": {"message": f"input has {max(counts)} tokens, "
                                                         f"more than {max_tokens}"}})
    data = [{"object": "embedding", "index": i, "embedding": [0.6, 0.8]}
            for i in range(len(items))]
    return _json_response(200, {"object": "list", "model": "trivial", "data": data,
                                "usage": {"prompt_tokens": sum(counts),
                                          "total_tokens": sum(counts)}})


def _json_response(status: int, payload: dict) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    reason = b"OK" if status == 200 else b"Bad Request"
    return (b"HTTP/1.1 " + str(status).encode() + b" " + reason + b"\r\ncontent-type: "
            b"application/json\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
            + body)


class _Handler(asyncio.Protocol):
    def __init__(self, response: bytes, echo_max_tokens: int | None = None):
        self.response = response
        self.echo_max_tokens = echo_max_tokens
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
            body, self.buffer = self.buffer[end + 4:total], self.buffer[total:]
            if self.echo_max_tokens is None:
                self.transport.write(self.response)
            else:
                self.transport.write(echo_response(body, self.echo_max_tokens))


async def serve(host: str, port: int, dim: int, ready_fd: int | None,
                echo_max_tokens: int | None = None) -> None:
    loop = asyncio.get_running_loop()
    response = canned_response(canned_body(dim))
    server = await loop.create_server(lambda: _Handler(response, echo_max_tokens), host, port,
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
    args = parser.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    try:
        asyncio.run(serve(args.host, args.port, args.dim, args.ready_fd,
                          args.max_tokens if args.echo else None))
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(0)


if __name__ == "__main__":
    main()
