"""OpenAI-compatible embeddings server over sentence-transformers / transformers.

The kit's ``hf`` backend: it lets the GPU paths run where torch has CUDA but no
serving engine, and it is a reference implementation over the same HTTP path
as vLLM / SGLang, so the HTTP contract deliberately follows vLLM's.

Matryoshka: as vLLM does when a model lists ``matryoshka_dimensions``, only the
listed sizes are accepted; the prefix is re-normalised (L2) when the model normalises.

encoder.py holds the model (loaded and pooled by embedgate.models.loading), app.py the HTTP
contract, __main__.py the command line (``python -m embedgate.serve.hf_server``).
"""

from typing import Any

from embedgate.serve.hf_server.app import APIError, create_app, error_response
from embedgate.serve.hf_server.encoder import HFEncoder

_CLI_NAMES = ("build_parser", "is_loopback", "main", "parse_dims")

__all__ = ["APIError", "HFEncoder", "create_app", "error_response", *_CLI_NAMES]


def __getattr__(name: str) -> Any:
    # The CLI names are imported on first use: importing __main__ here would make
    # `python -m embedgate.serve.hf_server` find it already imported and run a second copy.
    if name in _CLI_NAMES:
        from embedgate.serve.hf_server import __main__ as cli

        return getattr(cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
