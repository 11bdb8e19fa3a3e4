"""The OpenAI embeddings response: its fields, the order of its items, its token usage, its values.

Spec: https://platform.openai.com/docs/api-reference/embeddings/object and issue 4 ("Response
shape", "Invariance: values finite; norm 1 when the profile normalises").
"""

import numpy as np
import pytest

from embedgate.api.findings import miscount

pytestmark = pytest.mark.api

TEXTS = ["The cat sat on the mat.", "银行在河边。", "Привет, как дела?",
         "A much longer sentence about embeddings, servers and the order in which their "
         "answers come back.", "😀 🎉", "مرحبا بالعالم"]


def test_response_shape_follows_openai(api):
    """Every field a client reads: object, data[i].object/index/embedding, model, usage."""
    ex = api.post({"input": TEXTS})
    problems = []
    body = ex.body if isinstance(ex.body, dict) else {}
    if ex.status != 200 or not body:
        problems.append(f"status {ex.status}")
    if body.get("object") != "list":
        problems.append(f"object={body.get('object')!r}")
    if not api.model_name_ok(body.get("model")):
        problems.append(f"model={body.get('model')!r}")
    data = body.get("data") if isinstance(body.get("data"), list) else []
    if len(data) != len(TEXTS):
        problems.append(f"{len(data)} items in data")
    for i, item in enumerate(data):
        item = item if isinstance(item, dict) else {}
        emb = item.get("embedding")
        if item.get("object") != "embedding":
            problems.append(f"data[{i}].object={item.get('object')!r}")
        if item.get("index") != i:
            problems.append(f"data[{i}].index={item.get('index')!r}")
        if not isinstance(emb, list) or len(emb) != api.profile.embedding_dim:
            size = len(emb) if isinstance(emb, list) else repr(emb)[:40]
            problems.append(f"data[{i}].embedding has {size} values")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    prompt, total = usage.get("prompt_tokens"), usage.get("total_tokens")
    if not (isinstance(prompt, int) and prompt >= len(TEXTS)):
        problems.append(f"usage.prompt_tokens={prompt!r}")
    if total != prompt:
        problems.append(f"usage.total_tokens={total!r} (prompt_tokens={prompt!r})")
    assert not problems, api.finding(
        "the response does not have the OpenAI embeddings shape", sent=ex.request,
        got=f"{ex.answer()}; wrong: {'; '.join(problems[:8])}",
        expected=f'object "list", model {model_wanted(api)}, data[i] = {{object "embedding", '
                 f"index i, embedding of {api.profile.embedding_dim} floats}} for i in "
                 f"0..{len(TEXTS) - 1} in order, usage.prompt_tokens >= 1 per input "
                 f"and total_tokens == prompt_tokens")


def model_wanted(api) -> str:
    if api.behaviour.value("response_model") == "served_name":
        return repr(api.served_name)
    return (f"a model name ({api.behaviour.name} documents another than the served name: "
            f"{api.behaviour.describe('response_model')})")


def test_response_items_follow_request_order(api):
    """Item i must be the embedding of input i: a server that reorders is silently wrong."""
    batch, ex = api.embed(TEXTS)
    alone = api.alone(TEXTS)
    api.assert_agree(batch, alone, what="the items do not match the inputs at their index",
                     sent=ex.request, labels=[f"data[{i}]" for i in range(len(TEXTS))],
                     want_name="the same text embedded alone")
    nearest = [int(np.argmax(alone @ row)) for row in batch]
    assert nearest == list(range(len(TEXTS))), api.finding(
        "the items come back in another order", sent=ex.request,
        got=f"item i is nearest to the text at {nearest}",
        expected=f"item i nearest to text i: {list(range(len(TEXTS)))}")


def test_usage_prompt_tokens_match_reference_tokenizer(api, reference_tokenizer):
    """usage.prompt_tokens is what clients are billed and rate-limited by: it must be exact."""
    texts = [*TEXTS, reference_tokenizer.text_with_tokens(api.profile.max_tokens - 3)]
    expected = [reference_tokenizer.count(t) for t in texts]
    wrong, signs = [], set()
    for text, want in zip(texts, expected):
        ex = api.post({"input": [text]})
        got = (ex.body or {}).get("usage", {}).get("prompt_tokens") if ex.status == 200 else None
        if got != want:
            signs.add(miscount(got, want).split(" ")[0])
            wrong.append(f"{ex.request}: {miscount(got, want) if ex.status == 200 else ex.answer()}")
    batch = api.post({"input": texts})
    got_total = (batch.body or {}).get("usage", {}).get("prompt_tokens") \
        if batch.status == 200 else None
    if got_total != sum(expected):
        signs.add(miscount(got_total, sum(expected)).split(" ")[0])
        wrong.append(f"the batch of all {len(texts)}: {miscount(got_total, sum(expected))}")
    how = " and ".join(sorted(signs))
    assert not wrong, api.finding(
        f"usage.prompt_tokens is {how} against the model's tokenizer",
        sent=f"{len(texts) + 1} requests", got="; ".join(wrong[:4]),
        expected="prompt_tokens == the count of the model's tokenizer, special tokens included")


def test_embeddings_are_finite_and_unit_norm(api, mixed_texts):
    """NaN/inf poison every index they reach; a normalising model must return unit vectors."""
    vectors, ex = api.embed(mixed_texts)
    bad = [i for i, row in enumerate(vectors) if not np.all(np.isfinite(row))]
    assert not bad, api.finding("embeddings hold NaN or infinite values", sent=ex.request,
                            got=f"non-finite values in items {bad[:10]}",
                            expected="every value finite")
    norms = np.linalg.norm(vectors, axis=1)
    if api.profile.normalize:
        off = [(i, float(n)) for i, n in enumerate(norms) if abs(n - 1) > max(api.tolerance, 1e-5)]
        assert not off, api.finding(
            "embeddings are not unit vectors", sent=ex.request,
            got="norms " + ", ".join(f"item {i}: {n:.6f}" for i, n in off[:5]),
            expected=f"norm 1 within {max(api.tolerance, 1e-5):g}: profile "
                     f"{api.profile.name!r} says normalize = true")
    else:
        zero = [i for i, n in enumerate(norms) if n == 0]
        assert not zero, api.finding("embeddings are all zeros", sent=ex.request,
                                 got=f"zero vectors at {zero[:10]}", expected="non-zero vectors")
