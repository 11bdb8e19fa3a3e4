"""A fault-injecting HTTP proxy in front of a real embedding server.

Why: a check that cannot fail proves nothing. Each named fault breaks the answers of a real,
correct server in one specific way (NaN values, reordered items, ignored ``dimensions``, silent
truncation...) while still answering 200, so the kit's own tests can show that the api suite
catches every one of them.

The proxy forwards every method and path (``/health`` and ``/v1/models`` too, so the plugin's
readiness probe passes with ``--backend external --server-url``) and every header untouched
(``Authorization`` included; headers are never logged). Only ``POST /v1/embeddings`` is altered.
Faults are deterministic: every random draw is seeded from ``seed`` and what the request is.

    with FaultProxy("http://127.0.0.1:8000", "nan") as proxy:
        ...  # point the suite at proxy.url

    python -m embedgate.faults --upstream http://127.0.0.1:8000 --fault shuffle_order --port 9000
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import httpx
import numpy as np

__all__ = ["FAULTS", "Fault", "FaultProxy", "fault_names", "register", "resolve_fault", "main"]

EMBEDDINGS_PATH = "/v1/embeddings"
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
                        "accept-encoding", "content-encoding"})

Payload = dict[str, Any]
Items = list[dict[str, Any]]


class Reply(Exception):
    """Raised by a request hook to answer without asking the upstream server."""

    def __init__(self, status: int, body: Payload):
        super().__init__(status)
        self.status, self.body = status, body


class FaultState:
    """What a fault shares across requests: its parameters and counts of what it did."""

    def __init__(self, params: dict[str, Any], served_name: Callable[[], str | None]):
        self.params = params
        self.requests = 0  # POST /v1/embeddings seen so far
        self.applied = 0   # how many of them the fault changed
        self._served_name = served_name
        self._name: list[str | None] = []
        self._lock = threading.Lock()

    def next_call(self) -> "Call":
        with self._lock:
            self.requests += 1
            return Call(self, self.requests)

    def mark_applied(self) -> None:
        with self._lock:
            self.applied += 1

    def served_name(self) -> str | None:
        with self._lock:
            if not self._name:
                self._name.append(self._served_name())
            return self._name[0]


@dataclass(frozen=True)
class Call:
    """One embeddings request as a fault sees it: its number (from 1) and the shared state."""

    state: FaultState
    n: int

    @property
    def params(self) -> dict[str, Any]:
        return self.state.params

    def rng(self, *key: int) -> np.random.Generator:
        """Seeded by `seed` and key: the same key always draws the same numbers."""
        return np.random.default_rng([int(self.params["seed"]), *key])


RequestHook = Callable[[Payload, Call], "Payload | None"]
ResponseHook = Callable[[Payload, int, Any, Call], "tuple[int, Any] | None"]


@dataclass(frozen=True)
class Fault:
    """A named way for a server to be wrong.

    `request(payload, call)` may change the payload in place, raise Reply, and returns True
    when it changed something. `response(request, status, body, call)` returns a new
    (status, body) when it changed the answer, else None.
    """

    name: str
    description: str
    request: RequestHook | None = None
    response: ResponseHook | None = None
    params: tuple[tuple[str, Any], ...] = ()

    def defaults(self) -> dict[str, Any]:
        return {"seed": 0, **dict(self.params)}


FAULTS: dict[str, Fault] = {}


def register(name: str, description: str, *, on: str, **params: Any) -> Callable:
    """Register the decorated hook as fault `name`; `on` is "request" or "response"."""
    def register(hook: Callable) -> Callable:
        FAULTS[name] = Fault(name, description, **{on: hook}, params=tuple(params.items()))
        return hook
    return register


# -- helpers over the OpenAI body -------------------------------------------------------------
def _is_base64(request: Payload) -> bool:
    return request.get("encoding_format") == "base64"


def _get(item: dict[str, Any], b64: bool) -> np.ndarray:
    raw = item.get("embedding")
    if b64:
        return np.frombuffer(base64.b64decode(raw), dtype="<f4").astype(np.float64)
    return np.asarray(raw, dtype=np.float64)


def _put(item: dict[str, Any], vec: np.ndarray, b64: bool, *, order: str = "<") -> None:
    if b64:
        item["embedding"] = base64.b64encode(
            np.asarray(vec, dtype=f"{order}f4").tobytes()).decode("ascii")
    else:
        item["embedding"] = [float(v) for v in vec]


def on_items(*, min_items: int = 1) -> Callable[[Callable[[Items, Payload, Call], bool]],
                                                 ResponseHook]:
    """Wrap fn(items, request, call) -> changed into a response hook for 200 answers only."""
    def wrap(fn: Callable[[Items, Payload, Call], bool]) -> ResponseHook:
        def hook(request: Payload, status: int, body: Any, call: Call) -> tuple[int, Any] | None:
            data = body.get("data") if isinstance(body, dict) else None
            if status != 200 or not isinstance(data, list) or len(data) < min_items:
                return None
            return (status, body) if fn(data, request, call) else None
        return hook
    return wrap


def each_vector(transform: Callable[[int, np.ndarray, int, Call], np.ndarray]) -> ResponseHook:
    """A response hook applying transform(position, vector, batch size, call) to every item."""
    @on_items()
    def hook(items: Items, request: Payload, call: Call) -> bool:
        b64 = _is_base64(request)
        for pos, item in enumerate(items):
            _put(item, transform(pos, _get(item, b64), len(items), call), b64)
        return True
    return hook


def _nudge(vec: np.ndarray, direction: np.ndarray, size: float) -> np.ndarray:
    """Move vec along `direction` by `size` times its norm, then restore its norm.

    1 - cosine to the original is about size**2 / 2: 0.01 gives 5e-5, five times the fp32
    tolerance, and neither a norm nor a shape check can see it.
    """
    norm = np.linalg.norm(vec)
    moved = vec + direction / max(np.linalg.norm(direction), 1e-12) * size * norm
    return moved * (norm / max(np.linalg.norm(moved), 1e-12))


# -- the faults -------------------------------------------------------------------------------
@register("nan", "the first value of the first embedding becomes NaN", on="response")
@on_items()
def _nan(items: Items, request: Payload, call: Call) -> bool:
    b64 = _is_base64(request)
    vec = _get(items[0], b64)
    vec[:1] = np.nan
    _put(items[0], vec, b64)
    return vec.size > 0


register("wrong_dim", "every embedding loses its last value", on="response")(
    each_vector(lambda pos, vec, n, call: vec[:-1]))


@register("shuffle_order", "in a batch, the embeddings rotate one place; `index` fields stay",
       on="response")
@on_items(min_items=2)
def _shuffle_order(items: Items, request: Payload, call: Call) -> bool:
    vectors = [item.get("embedding") for item in items]
    for item, vec in zip(items, vectors[1:] + vectors[:1]):
        item["embedding"] = vec
    return True


@register("drop_item", "in a batch, the last item of `data` is dropped", on="response")
@on_items(min_items=2)
def _drop_item(items: Items, request: Payload, call: Call) -> bool:
    items.pop()
    return True


@register("ignore_dimensions", "`dimensions` is removed from the request, so the full vector "
       "comes back", on="request")
def _ignore_dimensions(request: Payload, call: Call) -> bool:
    return request.pop("dimensions", None) is not None


@register("unnormalized", "every embedding is multiplied by `scale`", on="response", scale=1.01)
def _unnormalized(request: Payload, status: int, body: Any, call: Call) -> tuple[int, Any] | None:
    scale = float(call.params["scale"])
    return each_vector(lambda pos, vec, n, call: vec * scale)(request, status, body, call)


@register("silent_truncation", "texts over `keep_chars` characters (token-id lists over "
       "`keep_ids`) are cut before the server sees them, and the answer does not say so",
       on="request", keep_chars=200, keep_ids=48)
def _silent_truncation(request: Payload, call: Call) -> bool:
    keep_chars, keep_ids = int(call.params["keep_chars"]), int(call.params["keep_ids"])
    inp = request.get("input")
    single_ids = isinstance(inp, list) and bool(inp) and all(isinstance(t, int) for t in inp)
    items = [inp] if isinstance(inp, str) or single_ids else inp
    if not isinstance(items, list):
        return False
    cut = [item[:keep_chars] if isinstance(item, str)
           else item[:keep_ids] if isinstance(item, list) else item for item in items]
    if cut == items:
        return False
    request["input"] = cut[0] if isinstance(inp, str) or single_ids else cut
    return True


@register("batch_dependent_noise", "in a batch of 2 or more, each embedding moves by seeded noise "
       "of relative size `scale` that depends on its place and the batch size (norm kept); a "
       "text sent alone is exact", on="response", scale=0.01)
def _batch_dependent_noise(request: Payload, status: int, body: Any,
                           call: Call) -> tuple[int, Any] | None:
    size = float(call.params["scale"])
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) < 2:
        return None  # alone, the answer is exact: only batching changes it
    return each_vector(lambda pos, vec, n, call: _nudge(
        vec, call.rng(n, pos).standard_normal(vec.shape), size))(request, status, body, call)


@register("base64_byteswap", "base64 embeddings are re-encoded big-endian", on="response")
@on_items()
def _base64_byteswap(items: Items, request: Payload, call: Call) -> bool:
    if not _is_base64(request):
        return False
    for item in items:
        _put(item, _get(item, True), True, order=">")
    return True


@register("flaky_5xx", "every `every`-th embeddings request answers 503", on="request", every=10)
def _flaky_5xx(request: Payload, call: Call) -> bool:
    if call.n % int(call.params["every"]) == 0:
        raise Reply(503, {"error": {"message": "fault proxy: injected 503 Service Unavailable",
                                    "type": "ServiceUnavailableError", "code": 503}})
    return False


@register("delay", "every embeddings request waits `ms` milliseconds first (for the perf gate)",
       on="request", ms=50.0)
def _delay(request: Payload, call: Call) -> bool:
    time.sleep(float(call.params["ms"]) / 1000.0)
    return True


@register("usage_miscount", "`usage.prompt_tokens` and `total_tokens` are one too many",
       on="response")
def _usage_miscount(request: Payload, status: int, body: Any,
                    call: Call) -> tuple[int, Any] | None:
    usage = body.get("usage") if isinstance(body, dict) else None
    if status != 200 or not isinstance(usage, dict):
        return None
    for key in ("prompt_tokens", "total_tokens"):
        if isinstance(usage.get(key), int):
            usage[key] += 1
    return status, body


@register("accept_any_model", "an unknown `model` is rewritten to the served one instead of "
       "refused", on="request")
def _accept_any_model(request: Payload, call: Call) -> bool:
    served = call.state.served_name()
    if not served or request.get("model") in (None, served):
        return False
    request["model"] = served
    return True


@register("errors_as_500", "every 4xx answer becomes a 500 with the same body", on="response")
def _errors_as_500(request: Payload, status: int, body: Any,
                   call: Call) -> tuple[int, Any] | None:
    return (500, body) if 400 <= status < 500 else None


@register("errors_as_200", "every 4xx answer becomes a 200 with an empty `data` list",
       on="response")
def _errors_as_200(request: Payload, status: int, body: Any,
                   call: Call) -> tuple[int, Any] | None:
    if not 400 <= status < 500:
        return None
    return 200, {"object": "list", "data": [], "model": request.get("model"),
                 "usage": {"prompt_tokens": 0, "total_tokens": 0}}


@register("parity_drift", "every embedding moves by a fixed seeded direction of relative size "
       "`eps` (norm kept): self-consistent, but not the model's vector", on="response", eps=0.02)
def _parity_drift(request: Payload, status: int, body: Any, call: Call) -> tuple[int, Any] | None:
    eps = float(call.params["eps"])
    # One direction per vector length, the same in every request: batches, repeats and orders
    # all agree with each other; only a comparison with the model itself can tell.
    return each_vector(lambda pos, vec, n, call: _nudge(
        vec, call.rng(len(vec)).standard_normal(vec.shape), eps))(request, status, body, call)


@register("nondeterministic", "every request moves each embedding by fresh seeded noise of "
       "relative size `scale` (norm kept), so repeats differ", on="response", scale=0.01)
def _nondeterministic(request: Payload, status: int, body: Any,
                      call: Call) -> tuple[int, Any] | None:
    size = float(call.params["scale"])
    return each_vector(lambda pos, vec, n, call: _nudge(
        vec, call.rng(call.n, pos).standard_normal(vec.shape), size))(
            request, status, body, call)


@register("eos_on_token_ids", "token-id inputs get `eos_id` (Qwen3's <|endoftext|> by default) "
       "appended when they do not end with it", on="request", eos_id=151643)
def _eos_on_token_ids(request: Payload, call: Call) -> bool:
    eos, inp = int(call.params["eos_id"]), request.get("input")
    if not isinstance(inp, list) or not inp:
        return False
    lists = [inp] if isinstance(inp[0], int) else inp
    changed = False
    for ids in lists:
        if isinstance(ids, list) and ids and all(isinstance(t, int) for t in ids) \
                and ids[-1] != eos:
            ids.append(eos)
            changed = True
    return changed


def fault_names() -> list[str]:
    return sorted(FAULTS)


def resolve_fault(name: str, params: dict[str, Any]) -> tuple[Fault, dict[str, Any]]:
    """The fault and its full parameters; unknown names or parameters are a ValueError."""
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}; known: none, {', '.join(fault_names())}")
    found = FAULTS[name]
    merged = found.defaults()
    unknown = sorted(set(params) - set(merged))
    if unknown:
        raise ValueError(f"fault {name!r} takes parameters {sorted(merged)}, not {unknown}")
    for key, value in params.items():
        kind = type(merged[key])
        try:
            merged[key] = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"fault {name!r}: {key}={value!r} is not of type "
                             f"{kind.__name__}") from None
    return found, merged


# -- the proxy --------------------------------------------------------------------------------
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

    `fault` is a name from FAULTS or "none"; `params` override the fault's defaults. Use it as
    a context manager; `url` is where to point a client, `state.requests` counts embeddings
    requests and `state.applied` how many of them the fault changed.
    """

    def __init__(self, upstream_url: str, fault: str = "none", *, port: int = 0,
                 timeout: float = 120.0, verbose: bool = False, **params: Any):
        self.upstream_url = upstream_url.rstrip("/")
        if fault == "none":
            if params:
                raise ValueError(f"fault 'none' takes no parameters, got {sorted(params)}")
            self.fault, merged = None, {}
        else:
            self.fault, merged = resolve_fault(fault, params)
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
        for f in sorted(FAULTS.values(), key=lambda f: f.name))
    parser = argparse.ArgumentParser(
        prog="python -m embedgate.faults", formatter_class=argparse.RawDescriptionHelpFormatter,
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
    parser.add_argument("--verbose", action="store_true",
                        help="log each request line and status (never headers)")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        proxy = FaultProxy(args.upstream, args.fault, port=args.port, verbose=args.verbose,
                           **dict(args.param))
    except ValueError as exc:
        parser.error(str(exc))
    with proxy:
        print(f"fault proxy {proxy.url} -> {proxy.upstream_url} fault={args.fault} "
              f"params={proxy.state.params}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
