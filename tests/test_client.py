"""EmbeddingClient (issue #2): batching, order by index, base64, errors with status and body,
no hidden retries. A mock transport stands in for the server."""

import base64
import json

import httpx
import numpy as np
import pytest

from embedgate.serve.client import (EmbeddingClient, EmbeddingHTTPError, EmbeddingResponseError,
                              apply_instruction)


def vec(text, dim=4):
    rng = np.random.default_rng(abs(hash(text)) % 2**32)
    return rng.standard_normal(dim).astype(np.float32)


def make(handler, **kw):
    calls = []

    def wrapped(request):
        calls.append(json.loads(request.content))
        return handler(calls[-1])

    client = EmbeddingClient("http://127.0.0.1:1", "m", transport=httpx.MockTransport(wrapped),
                             **kw)
    return client, calls


def answer(body, reverse=False, fmt=None):
    items = [{"object": "embedding", "index": i,
              "embedding": (base64.b64encode(vec(t).astype("<f4").tobytes()).decode()
                            if (fmt or body.get("encoding_format")) == "base64"
                            else vec(t).tolist())}
             for i, t in enumerate(body["input"])]
    if reverse:
        items.reverse()
    return httpx.Response(200, json={"object": "list", "data": items, "model": body["model"],
                                     "usage": {"prompt_tokens": 1, "total_tokens": 1}})


def test_client_batches_keep_order_and_use_indices():
    client, calls = make(lambda b: answer(b, reverse=True), batch_size=3, concurrency=2)
    texts = [f"t{i}" for i in range(8)]
    out = client.embed(texts)
    assert [len(c["input"]) for c in calls] == [3, 3, 2]
    np.testing.assert_array_equal(out, np.stack([vec(t) for t in texts]))


def test_client_base64_decodes_little_endian_float32():
    client, calls = make(answer)
    out = client.embed(["a", "b"], encoding_format="base64")
    assert calls[0]["encoding_format"] == "base64"
    np.testing.assert_array_equal(out, np.stack([vec("a"), vec("b")]))


def test_client_sends_dimensions_and_instruction():
    client, calls = make(answer)
    client.embed(["q"], dimensions=32, instruction="Instruct: find\nQuery:{text}")
    assert calls[0]["dimensions"] == 32 and calls[0]["input"] == ["Instruct: find\nQuery:q"]
    assert apply_instruction("q", "query: ") == "query: q"


def test_client_http_error_has_status_and_body_and_no_retry():
    client, calls = make(lambda b: httpx.Response(503, json={"error": {"message": "overloaded"}}))
    with pytest.raises(EmbeddingHTTPError) as exc:
        client.embed(["a"])
    assert exc.value.status == 503 and "overloaded" in str(exc.value)
    assert len(calls) == 1  # no silent retry


@pytest.mark.parametrize("fmt,mutate,match", [
    ("float", lambda d: d[:-1], "sent 2 inputs, got 1"),
    ("float", lambda d: [dict(d[0], index=0), dict(d[1], index=0)], "indices"),
    ("float", lambda d: [d[0], dict(d[1], embedding=d[1]["embedding"][:2])], "different lengths"),
    ("base64", lambda d: [d[0], dict(d[1], embedding=d[1]["embedding"][:16])],
     "different lengths"),
    ("base64", lambda d: [d[0], dict(d[1], embedding="AB")], "not valid base64"),
    ("base64", lambda d: [d[0], dict(d[1], embedding="AAAAAAA=")], "not whole float32"),
])
def test_client_rejects_malformed_200(fmt, mutate, match):
    def handler(b):
        body = answer(b).json()
        body["data"] = mutate(body["data"])
        return httpx.Response(200, json=body)

    client, _ = make(handler, encoding_format=fmt)
    with pytest.raises(EmbeddingResponseError, match=match):
        client.embed(["a", "b"])


def test_client_asks_for_base64_by_default_and_float_when_told():
    # base64 carries the float32 bytes themselves: the same values as JSON floats, less work
    client, calls = make(answer)
    np.testing.assert_array_equal(client.embed(["a"]), np.stack([vec("a")]))
    client.embed(["a"], encoding_format="float")
    assert [c["encoding_format"] for c in calls] == ["base64", "float"]


def test_client_api_key_sent_as_bearer():
    seen = []

    def handler(request):
        seen.append(request.headers.get("authorization"))
        return answer(json.loads(request.content))

    client = EmbeddingClient("http://127.0.0.1:1", "m", api_key="sk-1",
                             transport=httpx.MockTransport(handler))
    client.embed(["a"])
    assert seen == ["Bearer sk-1"]


def test_client_refuses_bad_arguments():
    client, _ = make(answer)
    with pytest.raises(ValueError):
        client.embed([])
    with pytest.raises(ValueError):
        client.embed(["a"], encoding_format="int8")
