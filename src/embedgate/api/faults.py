"""The fault catalogue: named ways for an embedding server to be wrong while still answering 200.

Why: a check that cannot fail proves nothing. Each fault breaks the answers of a real, correct
server in one specific way (NaN values, reordered items, ignored ``dimensions``, silent
truncation...), so the kit's own tests can show that the api suite catches every one of them.
``embedgate.api.proxy.FaultProxy`` applies one of them between a client and the server.

A fault is a request hook, a response hook or both, registered under its name with its
parameters' defaults. Faults are deterministic: every random draw is seeded from ``seed`` and
what the request is.

The perturbation faults (noise, drift, scale) are sized to the tolerance of the suite they must
fail: a move that fails a float32 check (1 - cosine <= 1e-5) is invisible to a bfloat16 one
(1e-2). Their defaults put the answer `FAULT_MARGIN` tolerances past the bound, whatever the
tolerance; every other fault breaks answers in a way no tolerance can hide.

    fault, params = resolve_fault("unnormalized", {"scale": "2"})
    # fault.response is the hook; params == {"seed": 0, "scale": 2.0}
    fault, params = resolve_fault("parity_drift", {}, tolerance=1e-2)
    # params["eps"] moves every vector to 1 - cosine == 5e-2 from the model's

``python -m embedgate.api.faults`` is another name for ``python -m embedgate.api.proxy``.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from embedgate.serve.client import decode_base64_embedding

__all__ = ["DEFAULT_TOLERANCE", "FAULTS", "FAULT_MARGIN", "Call", "Fault", "FaultState", "Reply",
           "fault_names", "nudge_size", "register", "resolve_fault"]

FAULT_MARGIN = 5.0        # a perturbation lands this many tolerances past the bound
DEFAULT_TOLERANCE = 1e-5  # float32's; the proxy's faults are sized to it unless told otherwise

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
    scaled: tuple[tuple[str, Callable[[float], float]], ...] = ()  # param -> f(tolerance)

    def defaults(self, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
        return {"seed": 0, **dict(self.params), **{k: f(tolerance) for k, f in self.scaled}}


def nudge_size(tolerance: float, margin: float = FAULT_MARGIN) -> float:
    """The move (relative to the norm, orthogonal to the vector) after which
    1 - cosine == margin * tolerance: 0.0100 at 1e-5, 0.329 at 1e-2."""
    cos = 1.0 - margin * tolerance
    return math.sqrt(1.0 / cos ** 2 - 1.0)


def scale_off_unit(tolerance: float, margin: float = FAULT_MARGIN) -> float:
    """A norm `margin` tolerances away from 1."""
    return 1.0 + margin * tolerance


FAULTS: dict[str, Fault] = {}


def register(name: str, description: str, *, on: str,
             scaled: dict[str, Callable[[float], float]] | None = None, **params: Any) -> Callable:
    """Register the decorated hook as fault `name`; `on` is "request" or "response".
    `scaled` names the parameters whose default follows the tolerance under test."""
    def register(hook: Callable) -> Callable:
        FAULTS[name] = Fault(name, description, **{on: hook}, params=tuple(params.items()),
                             scaled=tuple((scaled or {}).items()))
        return hook
    return register


# -- helpers over the OpenAI body -------------------------------------------------------------
def _is_base64(request: Payload) -> bool:
    return request.get("encoding_format") == "base64"


def _get(item: dict[str, Any], b64: bool) -> np.ndarray:
    raw = item.get("embedding")
    if b64:
        return decode_base64_embedding(raw).astype(np.float64)
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
    """Move vec by `size` times its norm along the part of `direction` orthogonal to it, then
    restore its norm: 1 - cosine to the original is exactly 1 - 1/sqrt(1 + size**2) (see
    nudge_size), and neither a norm nor a shape check can see it."""
    norm = np.linalg.norm(vec)
    unit = vec / max(norm, 1e-12)
    across = direction - np.dot(direction, unit) * unit
    moved = vec + across / max(np.linalg.norm(across), 1e-12) * size * norm
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


@register("unnormalized", "every embedding is multiplied by `scale`", on="response",
          scaled={"scale": scale_off_unit})
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
       "text sent alone is exact", on="response", scaled={"scale": nudge_size})
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


@register("fastapi_errors", "every 4xx answer becomes FastAPI's default validation error: status "
       "422 and {\"detail\": [{\"loc\", \"msg\", \"type\"}]} instead of the OpenAI error body",
       on="response")
def _fastapi_errors(request: Payload, status: int, body: Any,
                    call: Call) -> tuple[int, Any] | None:
    if not 400 <= status < 500:
        return None
    err = body.get("error") if isinstance(body, dict) else None
    message = err.get("message") if isinstance(err, dict) else str(body)
    return 422, {"detail": [{"type": "value_error", "loc": ["body"], "msg": str(message),
                             "input": None}]}


@register("parity_drift", "every embedding moves by a fixed seeded direction of relative size "
       "`eps` (norm kept): self-consistent, but not the model's vector", on="response",
          scaled={"eps": nudge_size})
def _parity_drift(request: Payload, status: int, body: Any, call: Call) -> tuple[int, Any] | None:
    eps = float(call.params["eps"])
    # One direction per vector length, the same in every request: batches, repeats and orders
    # all agree with each other; only a comparison with the model itself can tell.
    return each_vector(lambda pos, vec, n, call: _nudge(
        vec, call.rng(len(vec)).standard_normal(vec.shape), eps))(request, status, body, call)


@register("nondeterministic", "every request moves each embedding by fresh seeded noise of "
       "relative size `scale` (norm kept), so repeats differ", on="response",
          scaled={"scale": nudge_size})
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


def resolve_fault(name: str, params: dict[str, Any], *,
                  tolerance: float = DEFAULT_TOLERANCE) -> tuple[Fault, dict[str, Any]]:
    """The fault and its full parameters, the perturbations sized to `tolerance` unless given;
    unknown names or parameters are a ValueError."""
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}; known: none, {', '.join(fault_names())}")
    if not 0 < tolerance < 0.1:
        raise ValueError(f"tolerance {tolerance!r} must be in (0, 0.1)")
    found = FAULTS[name]
    merged = found.defaults(tolerance)
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
