"""OpenAI-compatible embeddings server over sentence-transformers / transformers.

The kit's ``hf`` backend: it lets the GPU paths run where torch has CUDA but no
serving engine, and it is a reference implementation over the same HTTP path
as vLLM / SGLang, so the HTTP contract below deliberately follows vLLM's.

Matryoshka: as vLLM does when a model lists ``matryoshka_dimensions``, only the
listed sizes are accepted; the prefix is re-normalised (L2) when the model normalises.
"""
import argparse
import base64
import hmac
import ipaddress
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

log = logging.getLogger("embedgate.hf_server")

_DTYPES = ("float32", "float16", "bfloat16")
_ST_POOLING = {"mean": "mean", "cls": "cls", "last": "lasttoken"}


def is_loopback(host: str) -> bool:
    """Servers bind loopback only, so the kit never exposes a model by accident."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _has_st_modules(model: str) -> bool:
    """A ``modules.json`` marks a sentence-transformers model (local dir or hub cache)."""
    if Path(model).is_dir():
        return (Path(model) / "modules.json").is_file()
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(model, "modules.json")  # honours HF_HUB_OFFLINE
        return True
    except Exception:
        return False


class HFEncoder:
    """Loads the model once; callers serialise access (the server holds a lock).

    sentence-transformers dirs pool and normalise per their own modules, so
    --pooling is only used on the plain transformers path (a mismatch is logged).
    """

    def __init__(self, model: str, *, pooling: str = "mean", normalize: bool = True,
                 max_tokens: int = 512, dtype: Optional[str] = None,
                 device: str = "auto", batch_size: int = 32) -> None:
        import torch

        self._torch = torch
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device, self.pooling, self.normalize = device, pooling, normalize
        self.max_tokens, self.batch_size = max_tokens, batch_size
        torch_dtype = getattr(torch, dtype) if dtype else None
        self._st = None
        if _has_st_modules(model):
            from sentence_transformers import SentenceTransformer

            self._st = SentenceTransformer(str(model), device=device)
            self._st.max_seq_length = max_tokens
            if torch_dtype is not None:
                self._st.to(torch_dtype)
            self._st.eval()
            self.tokenizer = self._st.tokenizer
            self._hf_model = getattr(self._st[0], "auto_model", None)
            pool = self._st[1] if len(self._st) > 1 else None  # ST >= 5 has .pooling_mode
            mode = getattr(pool, "pooling_mode", None)
            if mode and mode != _ST_POOLING[pooling]:
                log.warning("--pooling %s ignored: the model's own Pooling uses %r", pooling, mode)
        else:
            from transformers import AutoModel, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(str(model))
            self._hf_model = AutoModel.from_pretrained(str(model))
            self._hf_model.to(device=device, dtype=torch_dtype).eval()
        limit = getattr(getattr(self._hf_model, "config", None), "max_position_embeddings", None)
        if limit and max_tokens > limit:
            log.warning("--max-tokens %d exceeds max_position_embeddings %d", max_tokens, limit)
        self._dim = int(self.encode_texts(["dimension probe"]).shape[1])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def vocab_size(self) -> Optional[int]:
        """Lets the server reject out-of-range token ids with a 400, not a crash."""
        return getattr(getattr(self._hf_model, "config", None), "vocab_size", None)

    def tokenize_count(self, texts: Sequence[str]) -> list[int]:
        """Token count per text, special tokens included, never truncated."""
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=True, truncation=False)
        return [len(ids) for ids in enc["input_ids"]]

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if self._st is not None:
            out = self._st.encode(list(texts), convert_to_numpy=True, batch_size=self.batch_size,
                                  normalize_embeddings=self.normalize, show_progress_bar=False)
            return np.asarray(out, dtype=np.float32)
        return self._batched(texts, lambda b: dict(self.tokenizer(
            list(b), padding=True, truncation=False, return_tensors="pt")))

    def encode_ids(self, id_lists: Sequence[Sequence[int]]) -> np.ndarray:
        """Embeds pre-tokenized input as given, so ids are never re-tokenized."""
        return self._batched(id_lists, self._features)

    def _batched(self, items: Sequence[Any], featurize: Any) -> np.ndarray:
        chunks = [self._forward(featurize(items[i:i + self.batch_size]))
                  for i in range(0, len(items), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self._dim), np.float32)

    def _features(self, id_lists: Sequence[Sequence[int]]) -> dict[str, Any]:
        torch = self._torch
        width = max(len(ids) for ids in id_lists)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(id_lists), width), pad, dtype=torch.long)
        mask = torch.zeros((len(id_lists), width), dtype=torch.long)
        for row, ids in enumerate(id_lists):  # right padding
            input_ids[row, :len(ids)] = torch.tensor(list(ids), dtype=torch.long)
            mask[row, :len(ids)] = 1
        feats = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in getattr(self.tokenizer, "model_input_names", ()):
            feats["token_type_ids"] = torch.zeros_like(input_ids)
        return feats

    def _forward(self, feats: dict[str, Any]) -> np.ndarray:
        torch = self._torch
        feats = {k: v.to(self.device) for k, v in feats.items()}
        with torch.inference_mode():
            if self._st is not None:  # runs every module: Transformer, Pooling, Dense, ...
                emb = self._st(feats)["sentence_embedding"].float()
            else:
                out = self._hf_model(**feats)
                hidden = getattr(out, "last_hidden_state", None)
                emb = self._pool((out[0] if hidden is None else hidden).float(),
                                 feats["attention_mask"])
            if self.normalize:
                emb = torch.nn.functional.normalize(emb, p=2, dim=1)
        return emb.cpu().numpy().astype(np.float32)

    def _pool(self, hidden: Any, mask: Any) -> Any:
        torch = self._torch
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "last":  # last real token; right (or left) padding both work
            last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(dim=1)
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


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
        dim = int(encoder.dim)
        if req.dimensions is not None:
            if not mdims:
                raise APIError(400, f"Model `{served_model_name}` does not support matryoshka "
                                    f"representation; dimensions must be unset.")
            if req.dimensions not in mdims:
                raise APIError(400, f"dimensions {req.dimensions} is not supported; the model "
                                    f"supports {mdims}")
        items = [req.input] if isinstance(req.input, str) else list(req.input)
        if not items:
            raise APIError(400, "input must not be empty")
        as_ids = not isinstance(items[0], str)
        if as_ids and isinstance(items[0], int):
            items = [items]  # a single list[int] is one tokenized input
        if as_ids:
            vocab = getattr(encoder, "vocab_size", None)
            for i, ids in enumerate(items):
                bad = [t for t in ids if t < 0 or (vocab is not None and t >= vocab)]
                if bad:
                    raise APIError(400, f"input {i} has invalid token id {bad[0]} "
                                        f"(vocab size {vocab})")
        with lock:  # one model call at a time; fast tokenizers are not thread-safe either
            counts = [len(ids) for ids in items] if as_ids else encoder.tokenize_count(items)
            for i, n in enumerate(counts):
                if n == 0:
                    raise APIError(400, f"input {i} has 0 tokens; nothing to embed")
                if n > max_tokens:
                    raise APIError(400, f"input {i} has {n} tokens, more than this model's "
                                        f"maximum context length of {max_tokens} tokens; "
                                        f"please reduce the length of the input")
            vecs = encoder.encode_ids(items) if as_ids else encoder.encode_texts(items)
        vecs = np.asarray(vecs, dtype=np.float32)
        if req.dimensions is not None:
            vecs = vecs[:, :req.dimensions]
            if normalizes:
                vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        data = []
        for i, vec in enumerate(vecs):
            emb: Any = (base64.b64encode(vec.astype("<f4").tobytes()).decode("ascii")
                        if req.encoding_format == "base64" else vec.tolist())
            data.append({"object": "embedding", "index": i, "embedding": emb})
        total = int(sum(counts))
        return {"object": "list", "data": data, "model": served_model_name,
                "usage": {"prompt_tokens": total, "total_tokens": total}}

    return app


def parse_dims(value: str) -> list[int]:
    dims = [int(v) for v in value.split(",") if v.strip()]  # ValueError -> argparse error
    if any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError("matryoshka dims must be positive")
    return dims


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m embedgate.hf_server", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="local model dir or HF hub id")
    p.add_argument("--served-model-name", default=None, help="defaults to --model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--allow-non-loopback", action="store_true",
                   help="permit binding a non-loopback host (refused by default)")
    p.add_argument("--pooling", choices=("mean", "cls", "last"), default="mean")
    p.add_argument("--no-normalize", action="store_true", help="skip L2 normalisation")
    p.add_argument("--max-tokens", type=int, required=True,
                   help="longest accepted input in tokens; longer inputs get a 400")
    p.add_argument("--matryoshka-dims", type=parse_dims, default=[], help="e.g. 16,32,64")
    p.add_argument("--dtype", choices=_DTYPES, default=None)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return p


def _version(name: str) -> str:
    try:
        return __import__(name).__version__
    except Exception:
        return "not-installed"


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not is_loopback(args.host) and not args.allow_non_loopback:
        parser.error(f"refusing to bind non-loopback host {args.host!r} "
                     f"without --allow-non-loopback")
    if args.max_tokens < 1:
        parser.error("--max-tokens must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.info("versions: python=%s %s", sys.version.split()[0], " ".join(
        f"{n}={_version(n)}" for n in ("torch", "transformers", "sentence_transformers")))
    api_key = os.environ.get("EMBEDGATE_API_KEY") or None  # never from argv: ps shows argv
    encoder = HFEncoder(args.model, pooling=args.pooling, normalize=not args.no_normalize,
                        max_tokens=args.max_tokens, dtype=args.dtype, device=args.device)
    too_big = [d for d in args.matryoshka_dims if d > encoder.dim]
    if too_big:
        parser.error(f"--matryoshka-dims {too_big} exceed the model dim {encoder.dim}")
    name = args.served_model_name or args.model
    app = create_app(encoder, name, max_tokens=args.max_tokens,
                     matryoshka_dims=args.matryoshka_dims, api_key=api_key)
    log.info("api key auth: %s", "enabled" if api_key else "disabled")

    import uvicorn

    # Same as uvicorn.run(app, host, port, log_level="info"), but keeps the
    # Server so the ready line is printed only once the socket is bound.
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info"))

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            print(f"embedgate.hf_server ready: model={name} device={encoder.device} "
                  f"dim={encoder.dim} url=http://{args.host}:{args.port}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    server.run()


if __name__ == "__main__":
    main()
