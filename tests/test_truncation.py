"""Texts over the model's limit (issue #11): never a raw HTTP 400 traceback, always the mode the
user chose, and every shortened text counted for the report. A fake server refuses inputs over
LIMIT tokens (a token is a character here) unless asked to truncate, as vLLM does."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from embedgate.quality.truncation import (LimitAwareEncoder, LimitedEmbed, OverLimitError,
                                          choose_mode, truncation_note)
from embedgate.serve.client import EmbeddingClient, EmbeddingHTTPError

LIMIT = 12  # tokens, specials included: [CLS] + 10 characters + [SEP]


def vector(ids: list[int]) -> list[float]:
    rng = np.random.default_rng(sum(i * 31 ** k for k, i in enumerate(ids)) % 2**32)
    v = rng.normal(size=8)
    return list(v / np.linalg.norm(v))


def ids_of(text: str) -> list[int]:
    return [101] + [ord(c) for c in text] + [102]


class FakeTokenizer:
    """A character tokenizer with BERT's specials, truncating as Hugging Face's does."""

    def __call__(self, texts, add_special_tokens=True, truncation=False, max_length=None):
        rows = [ids_of(t) for t in texts]
        if truncation:
            rows = [r[:max_length - 1] + [102] if len(r) > max_length else r for r in rows]
        return {"input_ids": rows}


class FakeServer:
    def __init__(self, status_for_long: int = 400):
        self.requests: list[dict] = []
        self.status_for_long = status_for_long

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        rows = [ids_of(x) if isinstance(x, str) else list(x) for x in body["input"]]
        keep = body.get("truncate_prompt_tokens")
        if keep is not None:
            rows = [r[:keep - 1] + [102] if len(r) > keep else r for r in rows]
        long = [len(r) for r in rows if len(r) > LIMIT]
        if long:
            return httpx.Response(self.status_for_long, json={"error": {"message": (
                f"This model's maximum context length is {LIMIT} tokens. However, your prompt "
                f"contains at least {long[0]} input tokens")}})
        return httpx.Response(200, json={"data": [{"index": i, "embedding": vector(r)}
                                                  for i, r in enumerate(rows)],
                                         "usage": {"prompt_tokens": sum(map(len, rows))}})


def client(server: FakeServer) -> EmbeddingClient:
    return EmbeddingClient("http://fake", "m", batch_size=4, concurrency=2,
                           encoding_format="float", transport=httpx.MockTransport(server))


TEXTS = ["short", "also short", "this one is far too long for the model", "ok",
         "another text that is too long", "fine"]
EXPECTED = [vector(FakeTokenizer()([t], truncation=True, max_length=LIMIT)["input_ids"][0])
            for t in TEXTS]  # what sentence-transformers embeds: cut, [SEP] kept


def test_truncation_api_resends_only_refused_texts_and_counts_them():
    server = FakeServer()
    embed = LimitedEmbed(client(server), mode="api", max_tokens=LIMIT)
    got = embed(TEXTS)
    np.testing.assert_allclose(got, EXPECTED, atol=1e-6)
    assert set(embed.truncated) == {TEXTS[2], TEXTS[4]}
    truncating = [r for r in server.requests if "truncate_prompt_tokens" in r]
    assert sorted(r["input"][0] for r in truncating) == sorted([TEXTS[2], TEXTS[4]])
    assert all(r["truncate_prompt_tokens"] == LIMIT for r in truncating)


def test_truncation_tokenizer_sends_cut_ids_and_counts_them():
    server = FakeServer()
    embed = LimitedEmbed(client(server), mode="tokenizer", max_tokens=LIMIT,
                         tokenizer=FakeTokenizer())
    np.testing.assert_allclose(embed(TEXTS), EXPECTED, atol=1e-6)
    assert embed.truncated == {TEXTS[2]: len(ids_of(TEXTS[2])), TEXTS[4]: len(ids_of(TEXTS[4]))}
    assert all(len(x) == LIMIT for r in server.requests for x in r["input"]
               if not isinstance(x, str))
    assert not any("truncate_prompt_tokens" in r for r in server.requests)


def test_truncation_fail_names_the_text_not_a_traceback():
    embed = LimitedEmbed(client(FakeServer()), mode="fail", max_tokens=LIMIT)
    with pytest.raises(OverLimitError) as err:
        embed(TEXTS)
    message = str(err.value)
    assert "'this one is far too long for the model'" in message
    assert "maximum context length is 12" in message and "--embedgate-truncation api" in message


def test_truncation_a_5xx_is_not_taken_for_a_long_text():
    embed = LimitedEmbed(client(FakeServer(status_for_long=503)), mode="api", max_tokens=LIMIT)
    with pytest.raises(EmbeddingHTTPError) as err:
        embed(TEXTS)
    assert err.value.status == 503


def test_truncation_server_that_cannot_truncate_fails_readably():
    class Stubborn(FakeServer):
        def __call__(self, request):
            body = json.loads(request.content)
            body.pop("truncate_prompt_tokens", None)
            return super().__call__(httpx.Request("POST", request.url, json=body))
    embed = LimitedEmbed(client(Stubborn()), mode="api", max_tokens=LIMIT)
    with pytest.raises(OverLimitError, match="again with truncate_prompt_tokens=12"):
        embed(TEXTS)


def test_truncation_counted_per_task_for_the_report():
    encoder = LimitAwareEncoder(LimitedEmbed(client(FakeServer()), mode="api",
                                             max_tokens=LIMIT, why="asked for"))
    encoder.encode(TEXTS[:3], "task_a")
    encoder.encode(TEXTS[3:], "task_b")
    encoder.encode(TEXTS[:2], "task_c")  # cached texts still count for their task
    a, b, c = (encoder.truncation(t) for t in ("task_a", "task_b", "task_c"))
    assert (a["truncated"], a["texts"]) == (1, 3) and (b["truncated"], b["texts"]) == (1, 3)
    assert c["truncated"] == 0 and truncation_note(c) is None
    assert truncation_note(a).startswith("1 of 3 texts over the model's limit of 12 tokens: "
                                         "resent with truncate_prompt_tokens=12")
    assert "2 distinct texts over 12 tokens shortened" in encoder.summary()


def test_truncation_auto_picks_by_backend_and_tokenizer():
    def missing():
        raise RuntimeError("no local copy")
    assert choose_mode("auto", backend="vllm", token_ids=True, tokenizer=missing)[0] == "api"
    mode, tok, why = choose_mode("auto", backend="hf", token_ids=True, tokenizer=FakeTokenizer)
    assert mode == "tokenizer" and isinstance(tok, FakeTokenizer)
    assert choose_mode("auto", backend="external", token_ids=True, tokenizer=missing)[0] == "fail"
    assert choose_mode("auto", backend="hf", token_ids=False, tokenizer=FakeTokenizer)[0] == "fail"
    with pytest.raises(OverLimitError, match="needs the model's tokenizer"):
        choose_mode("tokenizer", backend="hf", token_ids=True, tokenizer=missing)
