"""The `hf` backend's HTTP contract: /health, /v1/models and /v1/embeddings, as vLLM answers them.

Request validation and error bodies follow vLLM's OpenAI-compatible server, so the api suite
holds every backend to one contract. The encoder is passed in, so tests drive the contract with
a fake one. (No ``from __future__ import annotations``: FastAPI must see the request model
defined inside create_app as a class, not as a string it cannot resolve.)
"""

import base64
import hmac
import threading
import time
from typing import Any, Optional, Sequence, Union

import numpy as np

from embedgate.models.loading import l2_normalize


class APIError(Exception):
    """Raised by handlers; rendered as the OpenAI/vLLM error body."""

    def __init__(self, status: int, message: str, err_type: str = "BadRequestError"):
        super().__init__(message)
        self.status, self.message, self.err_type = status, message, err_type


def error_response(status: int, message: str, err_type: str):
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status,
                        content={"error": {"message": message, "type": err_type, "code": status}})


def create_app(encoder: Any, served_model_name: str, *, max_tokens: int,
               matryoshka_dims: Sequence[int], api_key: Optional[str] = None):
    """Factory so tests can drive the HTTP contract with a fake encoder."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr
    from starlette.exceptions import HTTPException as StarletteHTTPException

    class EmbeddingRequest(BaseModel):
        # Unknown fields are ignored, as vLLM does; strict types so that
        # e.g. true / 1.5 / "4" are rejected instead of silently coerced.
        model_config = ConfigDict(extra="ignore")
        model: Optional[StrictStr] = None  # vLLM: omitted means the served model
        input: Union[StrictStr, list[StrictStr], list[StrictInt], list[list[StrictInt]]]
        encoding_format: StrictStr = "float"
        dimensions: Optional[StrictInt] = None
        user: Optional[StrictStr] = None

    app = FastAPI(title="embedgate hf_server")
    created = int(time.time())
    lock = threading.Lock()
    mdims = sorted(set(int(d) for d in matryoshka_dims or ()))
    normalizes = bool(getattr(encoder, "normalize", True))

    @app.exception_handler(APIError)
    async def _api_error(_req: Request, exc: APIError):
        return error_response(exc.status, exc.message, exc.err_type)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_req: Request, exc: RequestValidationError):
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                 for e in exc.errors()[:5]]
        return error_response(400, "invalid request: " + "; ".join(parts), "BadRequestError")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException):
        kind = {404: "NotFoundError", 405: "MethodNotAllowedError"}.get(exc.status_code, "APIError")
        return error_response(exc.status_code, str(exc.detail), kind)

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if api_key and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return error_response(401, "missing or invalid API key", "AuthenticationError")
        return await call_next(request)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{
            "id": served_model_name, "object": "model", "created": created,
            "owned_by": "embedgate", "max_model_len": max_tokens}]}

    @app.post("/v1/embeddings")
    def embeddings(req: EmbeddingRequest) -> dict:  # sync: FastAPI runs it in a threadpool
        if req.model is not None and req.model != served_model_name:
            raise APIError(404, f"The model `{req.model}` does not exist; this server "
                                f"serves `{served_model_name}`.", "NotFoundError")
        if req.encoding_format not in ("float", "base64"):
            raise APIError(400, f"encoding_format must be 'float' or 'base64', "
                                f"got {req.encoding_format!r}")
        if req.dimensions is not None:
            check_dimensions(req.dimensions, mdims, served_model_name)
        items, as_ids = request_items(req.input, getattr(encoder, "vocab_size", None))
        with lock:  # one model call at a time; fast tokenizers are not thread-safe either
            counts = [len(ids) for ids in items] if as_ids else encoder.tokenize_count(items)
            check_token_counts(counts, max_tokens)
            vecs = encoder.encode_ids(items) if as_ids else encoder.encode_texts(items)
        vecs = np.asarray(vecs, dtype=np.float32)
        if req.dimensions is not None:
            vecs = vecs[:, :req.dimensions]
            if normalizes:
                vecs = l2_normalize(vecs)
        data = []
        for i, vec in enumerate(vecs):
            emb: Any = (base64.b64encode(vec.astype("<f4").tobytes()).decode("ascii")
                        if req.encoding_format == "base64" else vec.tolist())
            data.append({"object": "embedding", "index": i, "embedding": emb})
        total = int(sum(counts))
        return {"object": "list", "data": data, "model": served_model_name,
                "usage": {"prompt_tokens": total, "total_tokens": total}}

    return app


def check_dimensions(dimensions: int, mdims: Sequence[int], served_model_name: str) -> None:
    """As vLLM with listed matryoshka_dimensions: only those sizes, and none without them."""
    if not mdims:
        raise APIError(400, f"Model `{served_model_name}` does not support matryoshka "
                            f"representation; dimensions must be unset.")
    if dimensions not in mdims:
        raise APIError(400, f"dimensions {dimensions} is not supported; the model "
                            f"supports {list(mdims)}")


def request_items(value: Any, vocab: Optional[int]) -> tuple[list[Any], bool]:
    """The request's inputs as a list, and whether they are token ids (then checked in range)."""
    items = [value] if isinstance(value, str) else list(value)
    if not items:
        raise APIError(400, "input must not be empty")
    as_ids = not isinstance(items[0], str)
    if as_ids and isinstance(items[0], int):
        items = [items]  # a single list[int] is one tokenized input
    if as_ids:
        for i, ids in enumerate(items):
            bad = [t for t in ids if t < 0 or (vocab is not None and t >= vocab)]
            if bad:
                raise APIError(400, f"input {i} has invalid token id {bad[0]} "
                                    f"(vocab size {vocab})")
    return items, as_ids


def check_token_counts(counts: Sequence[int], max_tokens: int) -> None:
    """Empty and over-long inputs are refused, naming the input, its count and the limit."""
    for i, n in enumerate(counts):
        if n == 0:
            raise APIError(400, f"input {i} has 0 tokens; nothing to embed")
        if n > max_tokens:
            raise APIError(400, f"input {i} has {n} tokens, more than this model's "
                                f"maximum context length of {max_tokens} tokens; "
                                f"please reduce the length of the input")
