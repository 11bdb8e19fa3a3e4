"""EmbeddingClient: the kit's one way to call ``/v1/embeddings``.

Explicit timeout, no hidden retries (a retry would hide a flaky server), batching and bounded
concurrency for datasets, and errors that carry the status and body of what came back.
"""

from __future__ import annotations

import base64
import binascii
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import httpx
import numpy as np

ENCODING_FORMATS = ("float", "base64")

# Inputs per request and requests in flight of `embed`. A vLLM CPU server runs one scheduler step
# and one API round trip per request, so on a 2-core machine 32 inputs per request left it 0.87-0.92
# of in-process sentence-transformers' encode rate and 64 gave 0.96-0.99 (same 4 in flight, the
# kit's 352 STS sentences; README "Encode rate"). hf_server and GPU servers batch internally, so a
# larger request costs them nothing.
DEFAULT_BATCH_SIZE = 64
DEFAULT_CONCURRENCY = 4


class EmbeddingHTTPError(RuntimeError):
    """The server answered with a non-2xx status; keeps the status and the body."""

    def __init__(self, status: int, body: str, request: str):
        self.status = status
        self.body = body
        super().__init__(f"{request} -> HTTP {status}: {body[:2000]}")


class EmbeddingResponseError(RuntimeError):
    """A 200 answer that does not hold what was asked for (count, indices, shape, values)."""


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The bearer header for an API key, or none; the one place a key becomes a header."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def decode_base64_embedding(data: str) -> np.ndarray:
    """OpenAI base64 embeddings are little-endian float32 bytes."""
    return np.frombuffer(base64.b64decode(data), dtype="<f4").astype(np.float32)


def apply_instruction(text: str, instruction: str | None) -> str:
    """`instruction` is a template with {text} (as in profiles) or a plain prefix."""
    if not instruction:
        return text
    return instruction.format(text=text) if "{text}" in instruction else instruction + text


class EmbeddingClient:
    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 timeout: float = 120.0, batch_size: int = DEFAULT_BATCH_SIZE,
                 concurrency: int = DEFAULT_CONCURRENCY,
                 encoding_format: str = "base64",
                 transport: httpx.BaseTransport | None = None,
                 extra_urls: Sequence[str] = ()):
        """encoding_format: what ``embed`` asks for by default. base64 carries the server's
        float32 bytes as they are (the same values JSON floats decode to) and saves the server
        formatting, and the client parsing, a decimal number per dimension.
        extra_urls: more servers of the same model (a fleet's replicas); `embed` spreads its
        batches over base_url and these, round robin, `concurrency` in flight to each."""
        if batch_size < 1 or concurrency < 1:
            raise ValueError("batch_size and concurrency must be >= 1")
        if encoding_format not in ENCODING_FORMATS:
            raise ValueError(f"encoding_format must be one of {ENCODING_FORMATS}")
        self.encoding_format = encoding_format
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.urls = [self.base_url, *(u.rstrip("/") for u in extra_urls)]
        self._pool = [httpx.Client(
            base_url=url, headers=auth_headers(api_key), timeout=timeout,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            transport=transport) for url in self.urls]
        self._http = self._pool[0]

    def close(self) -> None:
        for http in self._pool:
            http.close()

    def __enter__(self) -> "EmbeddingClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def models(self) -> list[str]:
        response = self._http.get("/v1/models")
        self._raise_for_status(response, "GET /v1/models")
        return [m["id"] for m in response.json()["data"]]

    def post_embeddings(self, payload: dict[str, Any]) -> httpx.Response:
        """One raw request, for contract tests that inspect status and body themselves."""
        return self._http.post("/v1/embeddings", json=payload)

    def embed(self, texts: str | Sequence[str], *, dimensions: int | None = None,
              encoding_format: str | None = None, instruction: str | None = None,
              extra_body: dict[str, Any] | None = None) -> np.ndarray:
        """Embed texts in order; returns a float32 array of shape (len(texts), dim).
        `extra_body` adds server-specific request fields (vLLM's truncate_prompt_tokens)."""
        encoding_format = encoding_format or self.encoding_format
        if encoding_format not in ENCODING_FORMATS:
            raise ValueError(f"encoding_format must be one of {ENCODING_FORMATS}")
        items = [texts] if isinstance(texts, str) else list(texts)
        if not items:
            raise ValueError("embed() needs at least one text")
        items = [apply_instruction(t, instruction) for t in items]
        batches = [items[i:i + self.batch_size] for i in range(0, len(items), self.batch_size)]

        def run(k: int) -> np.ndarray:  # batch k goes to server k mod the number of servers
            return self._embed_batch(batches[k], dimensions, encoding_format, extra_body,
                                     self._pool[k % len(self._pool)])

        workers = self.concurrency * len(self._pool)
        if len(batches) == 1 or workers == 1:
            parts = [run(k) for k in range(len(batches))]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = list(pool.map(run, range(len(batches))))
        dims = {p.shape[1] for p in parts}
        if len(dims) != 1:
            raise EmbeddingResponseError(f"batches came back with different dimensions {dims}")
        return np.concatenate(parts, axis=0)

    def _embed_batch(self, batch: list[str], dimensions: int | None, encoding_format: str,
                     extra_body: dict[str, Any] | None = None,
                     http: httpx.Client | None = None) -> np.ndarray:
        payload: dict[str, Any] = {"model": self.model, "input": batch,
                                   "encoding_format": encoding_format, **(extra_body or {})}
        if dimensions is not None:
            payload["dimensions"] = dimensions
        http = http or self._http
        where = "" if len(self._pool) == 1 else f" to {http.base_url}"
        what = f"POST /v1/embeddings{where} (model={self.model!r}, {len(batch)} inputs" + (
            f", dimensions={dimensions}" if dimensions is not None else "") + "".join(
            f", {k}={v!r}" for k, v in (extra_body or {}).items()) + ")"
        response = http.post("/v1/embeddings", json=payload)
        self._raise_for_status(response, what)
        return self._parse(response.json(), len(batch), encoding_format, what)

    @staticmethod
    def _parse(body: dict[str, Any], n: int, encoding_format: str, what: str) -> np.ndarray:
        data = body.get("data")
        if not isinstance(data, list) or len(data) != n:
            got = len(data) if isinstance(data, list) else type(data).__name__
            raise EmbeddingResponseError(f"{what}: sent {n} inputs, got {got} embeddings back")
        indices = [item.get("index") for item in data]
        if sorted(indices, key=lambda i: (not isinstance(i, int), i)) != list(range(n)):
            raise EmbeddingResponseError(f"{what}: indices {indices} are not 0..{n - 1}")
        rows: list[np.ndarray | None] = [None] * n
        for item in data:
            raw = item.get("embedding")
            if encoding_format == "base64":
                if not isinstance(raw, str):
                    raise EmbeddingResponseError(f"{what}: base64 asked, got {type(raw).__name__}")
                try:
                    data = base64.b64decode(raw, validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise EmbeddingResponseError(f"{what}: item {item['index']} is not valid "
                                                 f"base64 ({exc})") from None
                if len(data) % 4:
                    raise EmbeddingResponseError(f"{what}: item {item['index']} has "
                                                 f"{len(data)} bytes, not whole float32s")
                vec = np.frombuffer(data, dtype="<f4").astype(np.float32)
            else:
                vec = np.asarray(raw, dtype=np.float32)
            rows[item["index"]] = vec
        lengths = {len(r) for r in rows}
        if len(lengths) != 1:
            raise EmbeddingResponseError(f"{what}: embeddings have different lengths {lengths}")
        return np.stack(rows)

    @staticmethod
    def _raise_for_status(response: httpx.Response, what: str) -> None:
        if response.status_code >= 400:
            raise EmbeddingHTTPError(response.status_code, response.text, what)
