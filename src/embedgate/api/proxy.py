"""A fault-injecting HTTP proxy in front of a real embedding server, and its command line.

The proxy forwards every method and path (``/health`` and ``/v1/models`` too, so the plugin's
readiness probe passes with ``--embedgate-backend external --embedgate-server-url``) and every header untouched
(``Authorization`` included; headers are never logged). Only ``POST /v1/embeddings`` is altered,
by one fault of the catalogue in ``embedgate.api.faults`` (or none).

    with FaultProxy("http://127.0.0.1:8000", "nan") as proxy:
        ...  # point the suite at proxy.url

    python -m embedgate.api.proxy --upstream http://127.0.0.1:8000 --fault shuffle_order --port 9000
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from embedgate.api.faults import (DEFAULT_TOLERANCE, FAULTS, Fault, FaultState, Reply,
                                  fault_names, resolve_fault)

__all__ = ["FaultProxy", "build_parser", "main"]

EMBEDDINGS_PATH = "/v1/embeddings"
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
                        "accept-encoding", "content-encoding"})

Answer = tuple[int, bytes, dict[str, str]]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms ACK stall
    server: "_ProxyServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.proxy.verbose:  # the request line and status only, never headers
            super().log_message(format, *args)

    def _forward(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if self.command == "POST" and self.path.split("?")[0] == EMBEDDINGS_PATH:
            status, body, out_headers = proxy.embeddings(raw, headers)
        else:
            status, body, out_headers = proxy.passthrough(self.command, self.path, raw, headers)
        self.send_response(status)
        for key, value in out_headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _forward


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the suite opens 64 concurrent requests

    def __init__(self, address: tuple[str, int], proxy: "FaultProxy"):
        self.proxy = proxy
        super().__init__(address, _Handler)


class FaultProxy:
    """An OpenAI-compatible endpoint that forwards to `upstream_url` with one fault (or none).

    `fault` is a name from FAULTS, "none", or a Fault of the caller's own (the contract server
    of embedgate.api.contract_server is one); `params` override the fault's defaults, and
    `tolerance` (the suite's, 1e-5 for float32) sizes the perturbation faults. Use it as
    a context manager; `url` is where to point a client, `state.requests` counts embeddings
    requests and `state.applied` how many of them the fault changed.
    """

    def __init__(self, upstream_url: str, fault: "str | Fault" = "none", *, port: int = 0,
                 timeout: float = 120.0, verbose: bool = False,
                 tolerance: float = DEFAULT_TOLERANCE, **params: Any):
        self.upstream_url = upstream_url.rstrip("/")
        if isinstance(fault, Fault):
            self.fault, merged = fault, {**fault.defaults(tolerance), **params}
            fault = fault.name
        elif fault == "none":
            if params:
                raise ValueError(f"fault 'none' takes no parameters, got {sorted(params)}")
            self.fault, merged = None, {}
        else:
            self.fault, merged = resolve_fault(fault, params, tolerance=tolerance)
        self.name = fault
        self.state = FaultState(merged, self._served_name)
        self.verbose = verbose
        self._port = port
        self._http = httpx.Client(base_url=self.upstream_url, timeout=timeout,
                                  limits=httpx.Limits(max_connections=128,
                                                      max_keepalive_connections=64))
        self._auth: dict[str, str] = {}
        self._server: _ProxyServer | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not running; use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FaultProxy":
        self._server = _ProxyServer(("127.0.0.1", self._port), self)
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name=f"fault-proxy-{self.name}").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._http.close()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"FaultProxy({self.upstream_url!r}, {self.name!r}, {self.state.params})"

    def serve_until_interrupted(self, what: str, details: str = "") -> None:
        """Serve in the foreground (a command line's job): print where, stop on Ctrl-C."""
        with self:
            print(f"{what} {self.url} -> {self.upstream_url}{details}", flush=True)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass

    def passthrough(self, method: str, path: str, raw: bytes, headers: dict[str, str]) -> Answer:
        try:
            response = self._http.request(method, path, content=raw, headers=headers)
        except httpx.HTTPError as exc:
            return _bad_gateway(exc)
        return response.status_code, response.content, _response_headers(response)

    def embeddings(self, raw: bytes, headers: dict[str, str]) -> Answer:
        """Forward one embeddings request through the fault's request and response hooks."""
        try:
            request = json.loads(raw) if self.fault is not None else None
        except ValueError:
            request = None
        if not isinstance(request, dict):  # no fault, or not JSON: the server judges it
            return self.passthrough("POST", EMBEDDINGS_PATH, raw, headers)
        assert self.fault is not None
        call = self.state.next_call()
        asked = json.loads(raw)  # the hooks may change `request`; responses see what was asked
        self._auth = {k: v for k, v in headers.items() if k.lower() == "authorization"}
        try:
            if self.fault.request is not None and self.fault.request(request, call):
                self.state.mark_applied()
        except Reply as reply:
            self.state.mark_applied()
            return reply.status, _dumps(reply.body), {"Content-Type": "application/json"}
        try:
            response = self._http.post(EMBEDDINGS_PATH, content=_dumps(request), headers=headers)
        except httpx.HTTPError as exc:
            return _bad_gateway(exc)
        out_headers = _response_headers(response)
        if self.fault.response is None:
            return response.status_code, response.content, out_headers
        try:
            changed = self.fault.response(asked, response.status_code, response.json(), call)
        except (TypeError, ValueError, AttributeError, KeyError):
            changed = None  # an answer too malformed to alter goes on as it came
        if changed is None:
            return response.status_code, response.content, out_headers
        self.state.mark_applied()
        out_headers["Content-Type"] = "application/json"
        return changed[0], _dumps(changed[1]), out_headers

    def _served_name(self) -> str | None:
        """The first model the upstream lists (asked once, with the caller's credentials)."""
        try:
            return self._http.get("/v1/models", headers=self._auth).json()["data"][0]["id"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
            return None


def _bad_gateway(exc: Exception) -> Answer:
    body = {"error": {"message": f"fault proxy: upstream unreachable ({type(exc).__name__})",
                      "type": "BadGateway", "code": 502}}
    return 502, _dumps(body), {"Content-Type": "application/json"}


def _dumps(body: Any) -> bytes:
    return json.dumps(body, allow_nan=True).encode()  # an injected NaN must reach the client


def _response_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}


# -- command line -----------------------------------------------------------------------------
def _param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(
        f"  {f.name:22} {f.description}"
        + (f" (defaults: {', '.join(f'{k}={v}' for k, v in f.params)})" if f.params else "")
        + (f" (sized to --tolerance: {', '.join(k for k, _ in f.scaled)})" if f.scaled else "")
        for f in sorted(FAULTS.values(), key=lambda f: f.name))
    parser = argparse.ArgumentParser(
        prog="python -m embedgate.api.proxy", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve a fault-injecting proxy in front of an OpenAI-compatible embedding "
                    "server, on 127.0.0.1.",
        epilog=f"faults (every one also takes seed=0):\n  {'none':22} forward unchanged\n{listing}")
    parser.add_argument("--upstream", required=True, metavar="URL",
                        help="base URL of the real server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--fault", required=True, choices=["none", *fault_names()],
                        metavar="NAME", help="the fault to inject (listed below)")
    parser.add_argument("--port", type=int, default=0, metavar="N",
                        help="port to bind on 127.0.0.1. Default: a free one")
    parser.add_argument("--param", type=_param, action="append", default=[],
                        metavar="KEY=VALUE", help="override a fault parameter (repeatable)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="T",
                        help="the tolerance of the suite the faults must fail (1e-5 for float32, "
                             "1e-2 for bfloat16/float16): noise, drift and scale faults land "
                             "5 tolerances past it. Default: %(default)g")
    parser.add_argument("--verbose", action="store_true",
                        help="log each request line and status (never headers)")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        proxy = FaultProxy(args.upstream, args.fault, port=args.port, verbose=args.verbose,
                           tolerance=args.tolerance, **dict(args.param))
    except ValueError as exc:
        parser.error(str(exc))
    proxy.serve_until_interrupted("fault proxy",
                                  f" fault={args.fault} params={proxy.state.params}")


if __name__ == "__main__":
    main()
