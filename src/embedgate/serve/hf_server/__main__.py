"""The `hf` backend's command line: ``python -m embedgate.serve.hf_server --model M --max-tokens N``.

embedgate.serve.backends launches it with these flags; the API key comes from EMBEDGATE_API_KEY,
never from argv, which other users can read in a process list.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
import threading
import time
from typing import Optional, Sequence

from embedgate.models.loading import ST_POOLING
from embedgate.serve.hf_server.app import create_app
from embedgate.serve.hf_server.encoder import HFEncoder

log = logging.getLogger("embedgate.serve.hf_server")

_DTYPES = ("float32", "float16", "bfloat16")


def is_loopback(host: str) -> bool:
    """Servers bind loopback only, so the kit never exposes a model by accident."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_dims(value: str) -> list[int]:
    dims = [int(v) for v in value.split(",") if v.strip()]  # ValueError -> argparse error
    if any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError("matryoshka dims must be positive")
    return dims


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m embedgate.serve.hf_server",
        description="OpenAI-compatible embeddings server over sentence-transformers / transformers.")
    p.add_argument("--model", required=True, help="local model dir or HF hub id")
    p.add_argument("--served-model-name", default=None, help="defaults to --model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--allow-non-loopback", action="store_true",
                   help="permit binding a non-loopback host (refused by default)")
    p.add_argument("--pooling", choices=tuple(ST_POOLING), default="mean")
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
            print(f"embedgate.serve.hf_server ready: model={name} device={encoder.device} "
                  f"dim={encoder.dim} url=http://{args.host}:{args.port}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    server.run()


if __name__ == "__main__":
    main()
