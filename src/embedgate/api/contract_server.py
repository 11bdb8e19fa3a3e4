"""A contract test server: an OpenAI-compatible server made to answer as a backend's behaviour
table documents. It is NOT that backend.

Why: SGLang needs a CUDA GPU, so neither the kit's CI nor its developers can run it, yet the api
suite must meet SGLang with no false alarm and still catch every fault. This proxy sits in
front of a real server (the kit's hf backend or vLLM) and rewrites requests and answers into
what ``fixtures/backends/<kind>.toml`` says the backend does, entry by entry:

- ``error_body = "flat"``: every refusal becomes status 400 with the error fields at the top
  level, ``{"object": "error", "message", "type", "param", "code"}``;
- ``unknown_model = "embedded"``: a request naming another model is served by the one model;
- ``response_model = "any"``: the answer's ``model`` is the model path, not the served name;
- ``at_limit = "refused"``: an input of max_tokens tokens or more is refused with SGLang's words
  ("The input (N tokens) is longer than the model's context length (L tokens).");
- ``blank_text = "refused"``: an empty or whitespace-only text is refused;
- ``out_of_vocabulary_ids = "unchecked"``: ids the model does not have get a 500. The table
  says SGLang does not check them; what the GPU then does is undefined, so this is a stand-in,
  not SGLang's answer;

and so on for the entries the upstream already honours. Everything else (numerics, batching,
the readiness routes) is the upstream's own. A suite that passes here has passed against the
documented contract, not against SGLang: the real launch path (``--embedgate-backend sglang``)
is the one a user runs on a GPU.

    with ContractServer(hf_url, load_behaviour("sglang"), model_path="/models/m",
                        max_tokens=512, count_tokens=count, vocab_size=151669) as server:
        ...  # pytest -m api --embedgate-server-url {server.url} --embedgate-server-kind sglang

    python -m embedgate.api.contract_server --upstream URL --kind sglang --model-path DIR \\
        --max-tokens 512 [--tokenizer DIR] [--port N]
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from embedgate.api.faults import Call, Fault, Reply
from embedgate.api.proxy import FaultProxy
from embedgate.serve.behaviours import BackendBehaviour, load_behaviour, table_names

__all__ = ["ContractServer", "contract_fault", "main"]

Payload = dict[str, Any]


def _flat_error(status: int, message: str, err_type: str) -> Payload:
    """SGLang's ErrorResponse (sglang/srt/entrypoints/openai/protocol.py:106-111)."""
    return {"object": "error", "message": message, "type": err_type, "param": None,
            "code": status}


def _items(inp: Any) -> tuple[list[Any], bool]:
    """The inputs of a request and whether they are token ids; ([], False) when unreadable."""
    if isinstance(inp, str):
        return [inp], False
    if not isinstance(inp, list) or not inp:
        return [], False
    if all(isinstance(t, int) and not isinstance(t, bool) for t in inp):
        return [inp], True
    if all(isinstance(t, str) for t in inp):
        return list(inp), False
    if all(isinstance(t, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in t)
           for t in inp):
        return list(inp), True
    return [], False


def contract_fault(behaviour: BackendBehaviour, *, model_path: str, max_tokens: int,
                   count_tokens: Callable[[str], int] | None = None,
                   vocab_size: int | None = None) -> Fault:
    """The request and response rewrites that make an upstream answer as `behaviour` documents.

    count_tokens(text) (the model's tokenizer, special tokens included) lets the at-limit rule
    see text inputs; without it only token-id inputs are measured. vocab_size bounds valid ids.
    """
    value = behaviour.value
    flat = value("error_body") == "flat"

    def refuse(status: int, message: str, err_type: str = "BadRequestError") -> Reply:
        if flat:
            return Reply(status, _flat_error(status, message, err_type))
        return Reply(status, {"error": {"message": message, "type": err_type, "param": None,
                                        "code": status}})

    def request_hook(request: Payload, call: Call) -> bool:
        changed = False
        served = call.state.served_name()
        if (value("unknown_model") == "embedded" and served
                and request.get("model") not in (None, served)):
            request["model"] = served
            changed = True
        fmt = request.get("encoding_format", "float")
        if isinstance(fmt, str) and fmt not in ("float", "base64"):
            raise refuse(400, f"encoding_format must be either 'float' or 'base64', got {fmt!r}")
        items, as_ids = _items(request.get("input"))
        if value("blank_text") == "refused" and not as_ids:
            for i, text in enumerate(items):
                if not text.strip():
                    raise refuse(400, "Input cannot be empty or whitespace only"
                                 if isinstance(request["input"], str)
                                 else f"Input at index {i} cannot be empty or whitespace only")
        if as_ids and value("out_of_vocabulary_ids") == "unchecked":
            flat_list = isinstance(request["input"][0], int)
            for ids in items:
                bad = [t for t in ids if (t < 0 and not flat_list)
                       or (vocab_size is not None and t >= vocab_size)]
                if flat_list and any(t < 0 for t in ids):
                    i = next(i for i, t in enumerate(ids) if t < 0)
                    raise refuse(400, f"Token ID at index {i} must be non-negative")
                if bad:
                    raise refuse(500, f"Internal server error: token id {bad[0]} is outside the "
                                      f"vocabulary (contract server's stand-in: the backend "
                                      f"does not check it)", "InternalServerError")
        if value("at_limit") == "refused" and items:
            counts = ([len(ids) for ids in items] if as_ids
                      else [count_tokens(t) for t in items] if count_tokens else [])
            for n in counts:
                if n >= max_tokens:
                    raise refuse(400, f"The input ({n} tokens) is longer than the model's "
                                      f"context length ({max_tokens} tokens).")
        return changed

    def response_hook(request: Payload, status: int, body: Any,
                      call: Call) -> tuple[int, Any] | None:
        if 400 <= status < 500 and flat:
            err = body.get("error") if isinstance(body, dict) else None
            message = err.get("message") if isinstance(err, dict) else str(body)
            return 400, _flat_error(400, str(message), "BadRequestError")
        if status == 200 and isinstance(body, dict) and value("response_model") == "any":
            body["model"] = model_path
            return status, body
        return None

    return Fault(f"contract:{behaviour.name}",
                 f"answers as {behaviour.name} {behaviour.version} documents (not "
                 f"{behaviour.name} itself)", request=request_hook, response=response_hook)


class ContractServer(FaultProxy):
    """A FaultProxy whose one 'fault' is a backend's documented behaviour: NOT that backend."""

    def __init__(self, upstream_url: str, behaviour: BackendBehaviour, *, model_path: str,
                 max_tokens: int, count_tokens: Callable[[str], int] | None = None,
                 vocab_size: int | None = None, port: int = 0, timeout: float = 120.0):
        self.behaviour = behaviour
        super().__init__(upstream_url, contract_fault(
            behaviour, model_path=model_path, max_tokens=max_tokens, count_tokens=count_tokens,
            vocab_size=vocab_size), port=port, timeout=timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m embedgate.api.contract_server",
        description="Serve, on 127.0.0.1, a contract test server that answers as a backend's "
                    "behaviour table (fixtures/backends/KIND.toml) documents, in front of a "
                    "real OpenAI-compatible server. It is not that backend.")
    parser.add_argument("--upstream", required=True, metavar="URL")
    parser.add_argument("--kind", default="sglang", choices=table_names())
    parser.add_argument("--model-path", required=True, metavar="PATH",
                        help="what the answers' `model` says where the backend echoes its path")
    parser.add_argument("--max-tokens", type=int, required=True, metavar="N")
    parser.add_argument("--tokenizer", metavar="DIR",
                        help="the model's tokenizer, to apply the at-limit rule to texts")
    parser.add_argument("--port", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    count = vocab = None
    if args.tokenizer:
        from embedgate.models.reference import ReferenceTokenizer, config_vocab_size, load_tokenizer

        tokenizer = ReferenceTokenizer(load_tokenizer(args.tokenizer), args.max_tokens)
        count, vocab = tokenizer.count, config_vocab_size(args.tokenizer) or tokenizer.vocab_size
    server = ContractServer(args.upstream, load_behaviour(args.kind), model_path=args.model_path,
                            max_tokens=args.max_tokens, count_tokens=count, vocab_size=vocab,
                            port=args.port)
    server.serve_until_interrupted(f"contract server ({args.kind} as documented, not "
                                   f"{args.kind})")


if __name__ == "__main__":
    main()
