"""Fixtures of the api suite: the server as a contract checker sees it, and the reference model.

Every finding says what was sent, what came back and what was expected (issue 4), so `api`
wraps each exchange and builds those messages; `reference` is the in-process model the
answers are compared with, and skips (never passes) when its weights are not on this machine.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import httpx
import numpy as np
import pytest

from embedgate import hypothesis_profiles
from embedgate.client import auth_headers
from embedgate.model_profiles import ModelProfile
from embedgate.reference import (ReferenceEncoder, ReferenceTokenizer, ReferenceUnavailable,
                                 load_tokenizer, resolve_model_dir)

hypothesis_profiles.register()  # before hypothesis' own plugin reads --hypothesis-profile

REFERENCE_DEVICE_ENV = "EMBEDGATE_REFERENCE_DEVICE"

SENTENCES = [
    "The cat sat on the mat.", "银行在河边。", "Der schnelle braune Fuchs springt über den Hund.",
    "¿Dónde está la biblioteca?", "東京は日本の首都です。", "Привет, как дела?", "مرحبا بالعالم",
    "שלום עולם", "नमस्ते दुनिया", "안녕하세요 세계", "Café déjà vu, naïve façade.",
    "def add(a, b):\n    return a + b", "😀 emoji 🎉 party", "Ok.",
    "A bank can hold money or sit beside a river, and the two meanings rarely meet.",
    "Embeddings map text to vectors so that similar meanings end up close together.",
]


def pytest_configure(config: pytest.Config) -> None:
    """Load the hypothesis profile: the option, else EMBEDGATE_HYPOTHESIS_PROFILE, else ci.

    Hypothesis has a built-in `ci` profile of its own; loading again here makes ours win.
    """
    option = config.getoption("--hypothesis-profile", default=None)
    try:
        from hypothesis import settings
        current = settings.get_current_profile_name()
        if option and current != option and current.startswith(option):
            hypothesis_profiles.register()  # a verbosity variant hypothesis built: keep it
            return
        hypothesis_profiles.activate(option)
    except ValueError as exc:
        raise pytest.UsageError(f"embedgate: {exc}") from None


def short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text if len(text) <= limit else text[:limit] + "…"
    return repr(text) if isinstance(value, str) else text


def describe_input(inp: Any) -> str:
    """A short, faithful summary of an `input` field."""
    if isinstance(inp, str):
        return short(inp) + (f" ({len(inp)} chars)" if len(inp) > 60 else "")
    if isinstance(inp, list) and inp and all(isinstance(t, int) for t in inp):
        return f"{len(inp)} token ids {short(inp, 40)}"
    if isinstance(inp, list) and len(inp) == 1 and isinstance(inp[0], str):
        return f"[{describe_input(inp[0])}]"
    if isinstance(inp, list) and inp and all(isinstance(t, str) for t in inp):
        lens = sorted(len(t) for t in inp)
        return (f"{len(inp)} texts of {lens[0]}..{lens[-1]} chars "
                f"[{', '.join(short(t, 30) for t in inp[:2])}{', …' if len(inp) > 2 else ''}]")
    if isinstance(inp, list) and inp and all(isinstance(t, list) for t in inp):
        lens = sorted(len(t) for t in inp)
        return f"{len(inp)} token-id lists of {lens[0]}..{lens[-1]} ids {short(inp, 40)}"
    return short(inp)


def describe_payload(payload: dict[str, Any]) -> str:
    fields = [f"input={describe_input(v)}" if k == "input" else f"{k}={short(v, 40)}"
              for k, v in payload.items()]
    return "POST /v1/embeddings {" + ", ".join(fields) + "}"


def finding(what: str, *, sent: str, got: str, expected: str) -> str:
    """The one format of every failure message in the suite."""
    return f"{what}\n  sent:     {sent}\n  got:      {got}\n  expected: {expected}"


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
        lengths = sorted({len(d.get("embedding") or ()) if isinstance(d, dict) else -1
                          for d in data})
        return (f"HTTP 200, {len(data)} items, embedding lengths {lengths}, "
                f"usage {self.body.get('usage')}")

    def error_message(self) -> str | None:
        """The OpenAI-style `error.message`, or None when the body has none."""
        err = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(err, dict) and isinstance(err.get("message"), str) and err["message"]:
            return err["message"]
        return None


def gaps(got: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: 1 - cosine, and |norm ratio - 1| (a direction and a length disagreement)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    ng, nw = np.linalg.norm(got, axis=1), np.linalg.norm(want, axis=1)
    cos = np.sum(got * want, axis=1) / np.maximum(ng * nw, 1e-30)
    return 1.0 - cos, np.abs(ng / np.maximum(nw, 1e-30) - 1.0)


class ApiSession:
    """The server under test, seen through raw HTTP so that every answer can be judged."""

    def __init__(self, http: httpx.Client, profile: ModelProfile, served_name: str):
        self.http = http
        self.profile = profile
        self.served_name = served_name
        self.tolerance = profile.api_setting("tolerance")
        self.token_ids = profile.api_setting("token_ids")
        self.over_limit = profile.api_setting("over_limit")

    finding = staticmethod(finding)

    @property
    def tolerance_text(self) -> str:
        return (f"1 - cosine <= {self.tolerance:g} (profile {self.profile.name!r}, "
                f"dtype {self.profile.dtype})")

    def post(self, payload: dict[str, Any], *, add_model: bool = True) -> Exchange:
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


def _decode(raw: Any) -> np.ndarray:
    if isinstance(raw, str):
        return np.frombuffer(base64.b64decode(raw), dtype="<f4").astype(np.float64)
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


@pytest.fixture(scope="session")
def api(embedding_server, embedgate_settings, model_profile) -> ApiSession:
    """A session-wide raw client: fuzz tests reuse it across examples."""
    with httpx.Client(base_url=embedding_server.base_url, timeout=120.0,
                      headers=auth_headers(embedgate_settings.api_key),
                      limits=httpx.Limits(max_connections=64,
                                          max_keepalive_connections=64)) as http:
        yield ApiSession(http, model_profile, embedding_server.served_name)


@pytest.fixture(scope="session")
def reference_model_dir(embedding_server, embedgate_settings, model_profile) -> str:
    for module in ("torch", "transformers", "sentence_transformers"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"no reference model: {module} is not installed "
                        f"(pip install 'embedgate[hf]')")
    try:
        return resolve_model_dir(model_profile, server_model=embedding_server.model,
                                 cli_model=embedgate_settings.model,
                                 cache_dir=embedgate_settings.cache_dir)
    except ReferenceUnavailable as exc:
        pytest.skip(f"no reference model: {exc}")


@pytest.fixture(scope="session")
def reference_tokenizer(reference_model_dir, model_profile) -> ReferenceTokenizer:
    """The model's own tokenizer (light: no weights), for token counts and exact-length texts."""
    return ReferenceTokenizer(load_tokenizer(reference_model_dir), model_profile.max_tokens)


@pytest.fixture(scope="session")
def reference(reference_model_dir, model_profile) -> ReferenceEncoder:
    """The model run in-process with the profile's pooling and normalisation: fp32 on CPU, or
    on the GPU named by EMBEDGATE_REFERENCE_DEVICE (e.g. cuda) for models too big for that."""
    device = os.environ.get(REFERENCE_DEVICE_ENV) or "cpu"
    if device != "cpu":
        import torch

        if not device.startswith("cuda") or not torch.cuda.is_available():
            pytest.fail(f"{REFERENCE_DEVICE_ENV}={device!r}: use cpu, or cuda[:N] where torch "
                        f"sees a GPU (it sees {torch.cuda.device_count()})", pytrace=False)
    return ReferenceEncoder(reference_model_dir, model_profile, device=device)


@pytest.fixture(scope="session")
def mixed_texts(model_profile) -> list[str]:
    """32 texts from one word to about half the context, in several scripts."""
    budget = max(8, model_profile.max_tokens // 2)  # chars; these scripts take <= 1.5 tokens each
    rng = np.random.default_rng(4)
    out = []
    for i in range(32):
        words = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(1 + i % 7))
        size = int(rng.integers(1, budget)) if i % 4 else min(len(words), 12)
        out.append(words[:size].strip() or "x")
    return out
