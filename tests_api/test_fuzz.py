"""Hypothesis fuzzing: odd texts, batch sizes, `dimensions` and lengths around the limit.

Spec: issue 4 ("Fuzzing"): the invariants hold for any input, no request gets a 5xx, and errors
come only where the contract says (over the context limit, unsupported `dimensions`, token ids
outside the vocabulary). Where the spec leaves a choice, either answer passes: an empty or
whitespace-only text may be refused or embedded, and an input of exactly max_tokens may be
refused where the backend documents it (SGLang). Refusals are judged by their status here;
their body's shape is test_error_bodies_follow_the_openai_shape's. The example budget is the hypothesis profile's: `ci` (default, bounded,
derandomised), `dev` or `nightly`, chosen with --hypothesis-profile or
EMBEDGATE_HYPOTHESIS_PROFILE. A failure prints the falsifying example and its reproduce blob.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from embedgate.api import strategies as eg
from embedgate.api.findings import miscount
from embedgate.api.session import is_blank
from embedgate.models.reference import config_vocab_size

pytestmark = pytest.mark.api

# Texts of every kind the strategies know, up to a few hundred characters, plus long words.
FUZZ_TEXT = eg.texts(max_size=120, long_word_max=300)


def no_5xx(api, ex):
    assert ex.status < 500, api.finding(
        "the server failed on a request", sent=ex.request, got=ex.answer(),
        expected="never a 5xx: a bad request is a 4xx, a good one a 200")


def over_limit_ok(api, ex, counts):
    """A batch with an input over the limit: refused, or truncated visibly, per [api] over_limit."""
    limit = api.profile.max_tokens
    used = (ex.body or {}).get("usage", {}).get("prompt_tokens") if ex.status == 200 else None
    truncated = used == sum(min(c, limit) for c in counts)
    return {"reject": ex.refused, "truncate": truncated,
            "either": ex.refused or truncated}[api.over_limit]


def may_refuse(api, texts, counts) -> list[str]:
    """Why the spec lets the server refuse these texts (else it must embed them)."""
    why = [f"a blank text {t!r}" for t in texts if is_blank(t)][:2]
    if api.refuses_at_limit:
        why += [f"an input of exactly max_tokens ({c})" for c in counts
                if c == api.profile.max_tokens][:1]
    return why


@given(batch=eg.text_batches(min_size=1, max_size=64, elements=FUZZ_TEXT), probe=st.integers(0, 63))
def test_fuzz_text_batches_keep_the_invariants(api, reference_tokenizer, batch, probe):
    """Any batch of any texts: 200 with one unit vector per text, each as when sent alone."""
    limit = api.profile.max_tokens
    counts = [reference_tokenizer.count(t) for t in batch]
    ex = api.post({"input": batch})
    no_5xx(api, ex)
    if any(c > limit or c == 0 for c in counts):
        assert over_limit_ok(api, ex, counts) or (ex.refused and may_refuse(api, batch, counts)), \
            api.finding(
                f"a batch with an input over the limit (or with no tokens) {ex.outcome()}",
                sent=ex.request, got=ex.answer(),
                expected=f"per [api] over_limit = {api.over_limit!r}: refused with a 4xx, or "
                         f"visibly truncated; token counts {counts}")
        return
    if ex.refused and may_refuse(api, batch, counts):
        return  # the spec leaves these to the server (a blank text, an input at the limit)
    vectors = api.vectors(ex)  # 200, one readable item per input
    used = ex.body.get("usage", {}).get("prompt_tokens")
    assert used == sum(counts), api.finding(
        f"usage.prompt_tokens of a batch was {miscount(used, sum(counts))}", sent=ex.request,
        got=f"prompt_tokens {used!r}", expected=f"{sum(counts)} (counts {counts[:16]})")
    assert np.all(np.isfinite(vectors)), api.finding(
        "non-finite values", sent=ex.request, got=ex.answer(), expected="finite values")
    if api.profile.normalize:
        norms = np.linalg.norm(vectors, axis=1)
        assert np.all(np.abs(norms - 1) <= max(api.tolerance, 1e-5)), api.finding(
            "embeddings are not unit vectors", sent=ex.request,
            got=f"norms from {norms.min():.6f} to {norms.max():.6f}", expected="norm 1")
    picks = sorted({0, len(batch) - 1, probe % len(batch)})
    api.assert_agree(vectors[picks], api.alone([batch[i] for i in picks]),
                     what="texts embed differently inside this batch", sent=ex.request,
                     labels=[f"item {i} {batch[i][:20]!r}" for i in picks],
                     want_name="the same text sent alone")


@given(data=st.data())
def test_fuzz_whole_requests_get_200_or_a_contract_4xx(api, reference_tokenizer, data):
    """Random bodies (texts, batch, dimensions, encoding): a 4xx only for a contract reason."""
    profile = api.profile
    body = data.draw(eg.embedding_requests(
        model=api.served_name, supported_dims=profile.matryoshka_dims,
        embedding_dim=profile.embedding_dim, max_batch=16, text=eg.texts(max_size=60)),
        label="body")
    texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
    counts = [reference_tokenizer.count(t) for t in texts]
    dim = body.get("dimensions")
    reasons = ([f"dimensions={dim} is not in {list(profile.matryoshka_dims)}"]
               if dim is not None and dim not in profile.matryoshka_dims else [])
    reasons += [f"an input of {c} tokens" for c in counts if c > profile.max_tokens or c == 0]
    ex = api.post(body)
    no_5xx(api, ex)
    if reasons:
        assert ex.refused, api.finding(
            f"a request the contract refuses {ex.outcome()}", sent=ex.request, got=ex.answer(),
            expected=f"a 4xx refusal, because {'; '.join(reasons)}")
        return
    if ex.refused and may_refuse(api, texts, counts):
        return  # the spec leaves these to the server
    vectors = api.vectors(ex)
    want = (len(texts), dim or profile.embedding_dim)
    finite = bool(np.all(np.isfinite(vectors)))
    norms_ok = not profile.normalize or bool(
        np.all(np.abs(np.linalg.norm(vectors, axis=1) - 1) <= max(api.tolerance, 1e-5)))
    assert vectors.shape == want and finite and norms_ok, api.finding(
        "a valid request got a wrong answer", sent=ex.request,
        got=f"shape {vectors.shape}, finite {finite}, unit norms {norms_ok}",
        expected=f"shape {want}, finite values" + (", unit norms" if profile.normalize else ""))


@given(data=st.data())
def test_fuzz_dimensions_are_honoured_or_refused(api, data):
    """Listed sizes give that many values; any other int gets a 4xx; nothing gets a 5xx."""
    profile = api.profile
    dim = data.draw(eg.dimensions(supported=profile.matryoshka_dims,
                                  embedding_dim=profile.embedding_dim), label="dimensions")
    fmt = data.draw(st.sampled_from(["float", "base64"]), label="encoding_format")
    ex = api.post({"input": ["hello world", "银行"], "dimensions": dim, "encoding_format": fmt})
    no_5xx(api, ex)
    if dim in profile.matryoshka_dims:
        vectors = api.vectors(ex)
        assert vectors.shape == (2, dim), api.finding(
            f"dimensions={dim} was not honoured", sent=ex.request, got=f"shape {vectors.shape}",
            expected=f"2 vectors of {dim} values")
    else:
        assert ex.refused, api.finding(
            f"dimensions={dim} {ex.outcome()}", sent=ex.request, got=ex.answer(),
            expected=f"a 4xx refusal: supported sizes are "
                     f"{list(profile.matryoshka_dims) or 'none'}")


@given(data=st.data())
def test_fuzz_lengths_around_the_limit(api, reference_tokenizer, data):
    """Up to the limit: embedded and counted in full. Past it: refused or visibly truncated."""
    limit = api.profile.max_tokens
    n = data.draw(eg.token_lengths(limit=limit, spread=3, minimum=limit // 2), label="tokens")
    text = reference_tokenizer.text_with_tokens(n)
    ex = api.post({"input": [text]})
    no_5xx(api, ex)
    if n > limit:
        assert over_limit_ok(api, ex, [n]), api.finding(
            f"an input of {n} tokens (limit {limit}) was handled wrongly", sent=ex.request,
            got=ex.answer(), expected=f"per [api] over_limit = {api.over_limit!r}: refused "
                                      f"with a 4xx or truncated to {limit} visibly")
    elif n == limit and api.refuses_at_limit and ex.refused:
        assert str(limit) in ex.error_text(), api.finding(
            f"an input of exactly {n} tokens (the limit) was refused without naming the limit",
            sent=ex.request, got=ex.answer(),
            expected=f"a refusal naming {limit} ({api.behaviour.describe('at_limit')})")
    else:
        used = (ex.body or {}).get("usage", {}).get("prompt_tokens") if ex.status == 200 else None
        what = (f"was accepted and its usage {miscount(used, n)}" if ex.status == 200
                else ex.outcome())
        assert used == n, api.finding(
            f"an input of {n} tokens (limit {limit}) {what}", sent=ex.request,
            got=ex.answer(), expected=f"HTTP 200 with usage.prompt_tokens == {n}")


@given(data=st.data())
def test_fuzz_token_ids_are_embedded_or_refused(api, reference_tokenizer, reference_model_dir,
                                                data):
    """Valid ids: one vector per list, counted as sent. Ids outside the vocabulary: a 4xx."""
    if not api.token_ids:
        pytest.skip(f"profile {api.profile.name!r} says [api] token_ids = false")
    valid = reference_tokenizer.vocab_size
    beyond = max(valid, config_vocab_size(reference_model_dir) or 0)
    if data.draw(st.booleans(), label="valid"):
        ids = data.draw(eg.token_id_batches(vocab_size=valid, max_size=8, max_len=32),
                        label="ids")
        ex = api.post({"input": ids})
        no_5xx(api, ex)
        vectors = api.vectors(ex)
        used = ex.body.get("usage", {}).get("prompt_tokens")
        assert vectors.shape[0] == len(ids) and used == sum(map(len, ids)), api.finding(
            f"token ids came back as {vectors.shape[0]} vectors and their usage was "
            f"{miscount(used, sum(map(len, ids)))}", sent=ex.request, got=ex.answer(),
            expected=f"{len(ids)} vectors and prompt_tokens {sum(map(len, ids))}")
    else:
        ids = data.draw(eg.token_ids(vocab_size=beyond, max_size=16, invalid=True), label="ids")
        ex = api.post({"input": ids})
        assert ex.refused, api.finding(
            f"token ids outside the vocabulary {ex.outcome()}", sent=ex.request,
            got=ex.answer(), expected=f"a 4xx refusal (vocabulary: 0..{beyond - 1})"
                                      + api.documented("out_of_vocabulary_ids"))
