"""ApiSession: the server under test as an api check sees it, through raw HTTP.

Why raw HTTP: a contract check must judge every answer, malformed ones included, so nothing
between the check and the server may retry, coerce or drop a field. `post` sends one request and
returns an Exchange (what was sent, the status, the text, the parsed body); `embed` and `vectors`
turn a readable answer into rows ordered by `index` and fail with a finding (see
embedgate.api.findings) when it cannot be read; `assert_agree` compares two sets of vectors in
direction and length within the model profile's tolerance.

Writing a check of your own: the api suite's `api` fixture is an ApiSession on the plugin's
server, and the same fixture serves any folder of checks:

    # conftest.py
    import pytest
    from embedgate.api.session import open_session

    @pytest.fixture(scope="session")
    def api(embedding_server, embedgate_settings, model_profile):
        with open_session(embedding_server.base_url, model_profile,
                          embedding_server.served_name,
                          api_key=embedgate_settings.api_key) as session:
            yield session

    # test_my_checks.py
    import pytest

    pytestmark = pytest.mark.api

    def test_a_repeated_text_gets_the_same_vector(api):
        got, ex = api.embed(["the same text", "the same text"])
        api.assert_agree(got[1:], got[:1], what="one text twice in a batch got two vectors",
                         sent=ex.request, labels=["the second copy"],
                         want_name="the first copy")

    def test_an_unknown_model_is_a_client_error(api):
        ex = api.post({"model": "no-such-model", "input": "hello"})
        assert ex.refused, api.finding(
            f"an unknown model {ex.outcome()}", sent=ex.request, got=ex.answer(),
            expected="HTTP 4xx")

Run them with the options the api suite takes (backend, profile, server URL); every failure
reads as what was sent, what came back and what was expected.
"""

from __future__ import annotations

import base64
import binascii
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import httpx
import numpy as np

from embedgate.api.findings import describe_payload, finding, short
from embedgate.models.profiles import ModelProfile
from embedgate.serve.behaviours import BackendBehaviour, load_behaviour
from embedgate.serve.client import auth_headers, decode_base64_embedding

__all__ = ["OPENAI_ERROR_SHAPE", "SENTENCES", "ApiSession", "Exchange", "gaps", "is_blank",
           "mixed_length_texts", "open_session", "refusal_shape_findings"]

OPENAI_ERROR_SHAPE = '{"error": {"message", "type"}}'

SENTENCES = [
    "The cat sat on the mat.", "银行在河边。", "Der schnelle braune Fuchs springt über den Hund.",
    "¿Dónde está la biblioteca?", "東京は日本の首都です。", "Привет, как дела?", "مرحبا بالعالم",
    "שלום עולם", "नमस्ते दुनिया", "안녕하세요 세계", "Café déjà vu, naïve façade.",
    "def add(a, b):\n    return a + b", "😀 emoji 🎉 party", "Ok.",
    "A bank can hold money or sit beside a river, and the two meanings rarely meet.",
    "Embeddings map text to vectors so that similar meanings end up close together.",
]


def mixed_length_texts(max_tokens: int, *, count: int = 32) -> list[str]:
    """`count` texts from one word to about half of `max_tokens`, in several scripts.

    Drawn from SENTENCES with a fixed seed, so every run sends the same texts.
    """
    budget = max(8, max_tokens // 2)  # chars; these scripts take <= 1.5 tokens each
    rng = np.random.default_rng(4)
    out = []
    for i in range(count):
        words = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(1 + i % 7))
        size = int(rng.integers(1, budget)) if i % 4 else min(len(words), 12)
        out.append(words[:size].strip() or "x")
    return out


@dataclass
class Exchange:
    """One request and what came back."""

    sent: dict[str, Any]
    status: int
    text: str
    body: Any
    seconds: float

    def __repr__(self) -> str:  # assertion rewriting prints it: keep it one short line
        return f"<{self.request[:120]} -> HTTP {self.status}>"

    @property
    def request(self) -> str:
        return describe_payload(self.sent)

    def answer(self) -> str:
        """What came back, in a line: the status and the shape, or the error body."""
        if self.status != 200 or not isinstance(self.body, dict):
            return f"HTTP {self.status}: {self.text[:300]}"
        data = self.body.get("data")
        if not isinstance(data, list):
            return f"HTTP 200 without a data list: {self.text[:200]}"
        lengths = sorted({_vector_length(d.get("embedding")) if isinstance(d, dict) else "?"
                          for d in data}, key=str)
        return (f"HTTP 200, {len(data)} items, vector lengths {lengths}, "
                f"usage {self.body.get('usage')}")

    @property
    def refused(self) -> bool:
        """A 4xx: the server refused the request (whatever the body looks like)."""
        return 400 <= self.status < 500

    def outcome(self) -> str:
        """What happened to the request, in words a headline can use."""
        if self.refused:
            return f"was refused (HTTP {self.status})"
        if self.status >= 500:
            return f"failed with a server error (HTTP {self.status})"
        if 200 <= self.status < 300:
            return f"was accepted (HTTP {self.status})"
        return f"got HTTP {self.status}"

    def error_message(self) -> str | None:
        """The OpenAI-style `error.message`, or None when the body has none."""
        err = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(err, dict) and isinstance(err.get("message"), str) and err["message"]:
            return err["message"]
        return None

    def error_text(self) -> str:
        """Whatever message the refusal carries, in any body shape (for checks of its wording;
        the shape itself is judged once, by error_shape)."""
        body = self.body
        if isinstance(body, dict):
            err, detail = body.get("error"), body.get("detail")
            if isinstance(err, dict) and isinstance(err.get("message"), str):
                return err["message"]
            for value in (err, body.get("message"), detail):
                if isinstance(value, str):
                    return value
            if isinstance(detail, list):
                return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d)
                                 for d in detail)
        return self.text

    def error_shape(self) -> str | None:
        """None for the OpenAI error shape {"error": {"message", "type"}}, else what it is."""
        body = self.body
        if not isinstance(body, dict):
            return "not a JSON object" if body is None else f"a JSON {type(body).__name__}"
        err = body.get("error")
        if isinstance(err, dict):
            missing = [k for k in ("message", "type") if not isinstance(err.get(k), str)
                       or not err.get(k)]
            return f'{{"error": {{...}}}} without {" or ".join(missing)}' if missing else None
        if isinstance(err, str):
            return '{"error": "<a string>"}'
        if "detail" in body:
            kind = "[...]" if isinstance(body["detail"], list) else "<a string>"
            return f'{{"detail": {kind}}} (FastAPI\'s default)'
        if "message" in body:
            keys = ", ".join(f'"{k}"' for k in body)
            return f"the error fields at the top level ({{{keys}}})"
        return f"JSON with keys {sorted(body)}"


def gaps(got: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: 1 - cosine, and |norm ratio - 1| (a direction and a length disagreement)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    ng, nw = np.linalg.norm(got, axis=1), np.linalg.norm(want, axis=1)
    cos = np.sum(got * want, axis=1) / np.maximum(ng * nw, 1e-30)
    return 1.0 - cos, np.abs(ng / np.maximum(nw, 1e-30) - 1.0)


class ApiSession:
    """The server under test, seen through raw HTTP so that every answer can be judged.

    What the server must do comes from the model profile's [api] table where it sets a key, else
    from the backend's behaviour table (`behaviour`, fixtures/backends/*.toml; the OpenAI spec
    alone when none is given): `tolerance` (how close two answers must be), `token_ids` (whether
    token-id inputs are checked), `over_limit` (reject, truncate or either for input over the
    context limit), `longest_input` (the most tokens an input may have and still be embedded:
    max_tokens, or one less where the backend refuses an input of exactly max_tokens) and which
    `model` name an answer may carry.
    """

    def __init__(self, http: httpx.Client, profile: ModelProfile, served_name: str,
                 behaviour: BackendBehaviour | None = None, *, served_dtype: str | None = None):
        self.http = http
        self.profile = profile
        self.served_name = served_name
        self.served_dtype = served_dtype
        self.behaviour = behaviour or load_behaviour("openai")
        self.tolerance = profile.api_tolerance(served_dtype)
        self.token_ids = _first_set(profile.api_setting("token_ids"),
                                    self.behaviour.value("token_ids"))
        self.over_limit = _first_set(profile.api_setting("over_limit"),
                                     self.behaviour.value("over_limit"))
        self.refuses_at_limit = self.behaviour.value("at_limit") == "refused"
        self.longest_input = profile.max_tokens - (1 if self.refuses_at_limit else 0)

    def model_name_ok(self, name: Any) -> bool:
        """The answer's `model`: the served name, or (where the backend documents another, e.g.
        SGLang's --model-path) any non-empty string."""
        if self.behaviour.value("response_model") == "served_name":
            return name == self.served_name
        return isinstance(name, str) and bool(name)

    def documented(self, key: str) -> str:
        """`(documented: sglang 0.5.23: file:line)` when the backend's table lists `key` as a
        defect: the finding is real, and known."""
        if self.behaviour.entries[key].verdict != "defect":
            return ""
        return f" (a documented {self.behaviour.describe(key)})"

    finding = staticmethod(finding)

    @property
    def tolerance_text(self) -> str:
        source = ("[api] tolerance" if "tolerance" in self.profile.api
                  else f"served dtype {self.served_dtype}" if self.served_dtype
                  else f"dtype {self.profile.dtype}")
        return f"1 - cosine <= {self.tolerance:g} (profile {self.profile.name!r}, {source})"

    def post(self, payload: dict[str, Any], *, add_model: bool = True) -> Exchange:
        """Send `payload` as it is, with the served model's name unless it names one."""
        sent = ({"model": self.served_name} if add_model and "model" not in payload else {})
        sent.update(payload)
        t0 = time.monotonic()
        response = self.http.post("/v1/embeddings", json=sent)
        try:
            body = response.json()
        except ValueError:
            body = None
        return Exchange(sent, response.status_code, response.text, body,
                        time.monotonic() - t0)

    def embed(self, inp: Any, *, dimensions: int | None = None,
              encoding_format: str | None = None) -> tuple[np.ndarray, Exchange]:
        """Vectors ordered by `index`, after checking the answer can be read at all."""
        payload: dict[str, Any] = {"input": inp}
        if dimensions is not None:
            payload["dimensions"] = dimensions
        if encoding_format is not None:
            payload["encoding_format"] = encoding_format
        ex = self.post(payload)
        return self.vectors(ex), ex

    def vectors(self, ex: Exchange) -> np.ndarray:
        """One row per input of `ex`, ordered by `index`; a finding when it cannot be read."""
        inp = ex.sent["input"]
        n = 1 if isinstance(inp, str) or (inp and isinstance(inp[0], int)) else len(inp)
        problem = _unreadable(ex, n, ex.sent.get("encoding_format") == "base64")
        if problem:
            raise AssertionError(finding("the answer cannot be read as embeddings",
                                         sent=ex.request, got=problem,
                                         expected=f"HTTP 200 with {n} items indexed "
                                                  f"0..{n - 1}, each one vector of equal length"))
        rows = {d["index"]: _decode(d["embedding"]) for d in ex.body["data"]}
        return np.stack([rows[i] for i in range(n)])

    def alone(self, texts: Sequence[Any], **kw: Any) -> np.ndarray:
        """Each input in a request of its own."""
        return np.vstack([self.embed([t] if isinstance(t, str) else t, **kw)[0] for t in texts])

    def concurrently(self, payloads: Sequence[dict[str, Any]], workers: int) -> list[Exchange]:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.post, payloads))

    def assert_agree(self, got: np.ndarray, want: np.ndarray, *, what: str, sent: str,
                     labels: Sequence[str], want_name: str, tolerance: float | None = None
                     ) -> None:
        """Fail, listing the worst rows, where got and want differ in direction or length."""
        tol = self.tolerance if tolerance is None else tolerance
        if got.shape != want.shape:
            raise AssertionError(finding(what, sent=sent, got=f"shape {got.shape}",
                                         expected=f"shape {want.shape}, as {want_name}"))
        cos_gap, len_gap = gaps(got, want)
        bad = [i for i in range(len(got))
               if not (cos_gap[i] <= tol and len_gap[i] <= tol) or not np.isfinite(cos_gap[i])]
        if bad:
            worst = sorted(bad, key=lambda i: -np.nan_to_num(cos_gap[i], nan=9.0))[:4]
            rows = "; ".join(f"{labels[i]}: 1 - cosine {cos_gap[i]:.3g}, norm ratio off by "
                             f"{len_gap[i]:.3g}" for i in worst)
            bound = self.tolerance_text if tolerance is None else f"1 - cosine <= {tol:g}"
            raise AssertionError(finding(
                what, sent=sent, got=f"{len(bad)} of {len(got)} differ from {want_name}: {rows}",
                expected=f"each equal to {want_name} in direction and length: {bound}"))


@contextmanager
def open_session(base_url: str, profile: ModelProfile, served_name: str, *,
                 api_key: str | None = None, timeout: float = 120.0,
                 connections: int = 64, behaviour: BackendBehaviour | None = None,
                 served_dtype: str | None = None) -> Iterator[ApiSession]:
    """An ApiSession on the server at `base_url`, its HTTP client closed on exit.

    One client for the whole session, so fuzz tests reuse its connections across examples;
    `connections` bounds how many requests `concurrently` can have open at once. `behaviour`
    is the backend's table (embedgate.serve.launch.behaviour_for); default: the OpenAI spec.
    """
    with httpx.Client(base_url=base_url, timeout=timeout, headers=auth_headers(api_key),
                      limits=httpx.Limits(max_connections=connections,
                                          max_keepalive_connections=connections)) as http:
        yield ApiSession(http, profile, served_name, behaviour, served_dtype=served_dtype)


def refusal_shape_findings(exchanges: Sequence[Exchange], *, documented: str = "") -> list[str]:
    """One finding per body shape that is not the OpenAI error shape, listing every refusal
    behind it: a server that refuses properly with the wrong body is one root cause, not one
    failure per request."""
    groups: dict[str, list[Exchange]] = {}
    for ex in exchanges:
        shape = ex.error_shape() if ex.refused else None
        if shape is not None:
            groups.setdefault(shape, []).append(ex)
    out = []
    for shape, group in groups.items():
        statuses = sorted({ex.status for ex in group})
        codes = " and ".join(map(str, statuses))
        listed = "; ".join(ex.request for ex in group[:6]) + (
            f"; and {len(group) - 6} more" if len(group) > 6 else "")
        out.append(finding(
            f"{len(group)} request(s) were refused with status {codes} and a body that is not "
            f"the OpenAI error shape {OPENAI_ERROR_SHAPE}: {shape}",
            sent=listed, got=f"e.g. HTTP {group[0].status}: {group[0].text[:200]}",
            expected=f"the same refusals with a body {OPENAI_ERROR_SHAPE}{documented}"))
    return out


def is_blank(text: str) -> bool:
    """Empty or whitespace only (Python's str.strip, as SGLang tests it): the OpenAI spec says
    an input cannot be an empty string and leaves whitespace open, so such a text may be
    refused or embedded."""
    return not text.strip()


def _first_set(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _vector_length(raw: Any) -> Any:
    """How many values an `embedding` holds: a list's length, or a base64 string's float32s."""
    if isinstance(raw, list):
        return len(raw)
    if isinstance(raw, str):
        try:
            size = len(base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError):
            return "not base64"
        return size // 4 if size % 4 == 0 else f"{size} bytes"
    return type(raw).__name__


def _decode(raw: Any) -> np.ndarray:
    if isinstance(raw, str):
        return decode_base64_embedding(raw).astype(np.float64)
    return np.asarray(raw, dtype=np.float64)


def _unreadable(ex: Exchange, n: int, b64: bool) -> str | None:
    """Why the answer is not n readable embeddings, or None."""
    if ex.status != 200:
        return ex.answer()
    data = ex.body.get("data") if isinstance(ex.body, dict) else None
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        return f"HTTP 200 without a list of items in `data`: {ex.text[:200]}"
    if len(data) != n:
        return f"HTTP 200 with {len(data)} items in `data`"
    indices = [d.get("index") for d in data]
    if sorted(i for i in indices if isinstance(i, int)) != list(range(n)):
        return f"HTTP 200 with indices {indices[:10]}"
    lengths = set()
    for d in data:
        raw = d.get("embedding")
        try:
            if b64:
                if not isinstance(raw, str):
                    return f"base64 asked, `embedding` is a {type(raw).__name__}"
                size = len(base64.b64decode(raw, validate=True))
                if size % 4:
                    return f"base64 embedding of {size} bytes, not whole float32s"
                lengths.add(size // 4)
            else:
                if not isinstance(raw, list) or not all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
                    return f"`embedding` is not a list of numbers: {short(raw, 80)}"
                lengths.add(len(raw))
        except (binascii.Error, ValueError) as exc:
            return f"`embedding` is not valid base64 ({exc})"
    if len(lengths) != 1 or 0 in lengths:
        return f"embeddings of lengths {sorted(lengths)}"
    return None
