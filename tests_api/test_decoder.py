"""Decoder (last-token pooling) models: the EOS the tokenizer appends is the token pooled.

Spec: issue 4 ("Decoder models"): Qwen3-Embedding's tokenizer appends <|endoftext|> to every text
and the model pools that last token. Token ids are embedded as given: ids without the EOS must
not silently match the text (a server that appends it to ids, or forgets it on texts, would
make them match), and ids with it must.
"""

import pytest

from embedgate.api.findings import miscount

pytestmark = pytest.mark.api

TEXTS = ["The cat sat on the mat.", "银行在河边。", "What is the capital of France?"]


@pytest.fixture
def eos(api, reference_tokenizer):
    if api.profile.pooling != "last":
        pytest.skip(f"profile {api.profile.name!r} pools {api.profile.pooling!r}, not the last "
                    f"token: EOS handling is a decoder check")
    if not api.token_ids:
        pytest.skip(f"profile {api.profile.name!r} says [api] token_ids = false")
    if not reference_tokenizer.appended:
        pytest.skip("the model's tokenizer appends no token to a text: no EOS to check")
    return reference_tokenizer.appended


def test_decoder_token_ids_with_eos_match_the_text(api, reference_tokenizer, eos):
    """The tokenizer's ids (EOS included) are exactly what a text becomes: same vector."""
    ids = [reference_tokenizer.ids(t) for t in TEXTS]
    assert all(tuple(i[-len(eos):]) == eos for i in ids)
    from_ids, ex = api.embed(ids)
    api.assert_agree(from_ids, api.alone(TEXTS), what="token ids with the EOS differ from the text",
                     sent=ex.request, labels=TEXTS, want_name="the text's embedding")


def test_decoder_token_ids_without_eos_do_not_match_the_text(api, reference_tokenizer, eos):
    """Ids without the EOS are another input: embedded as sent, counted as sent."""
    bare = [reference_tokenizer.ids(t)[:-len(eos)] for t in TEXTS]
    text_vectors = api.alone(TEXTS)
    for text, ids, text_vec in zip(TEXTS, bare, text_vectors):
        got, ex = api.embed(ids)
        used = ex.body.get("usage", {}).get("prompt_tokens")
        assert used == len(ids), api.finding(
            f"usage of token ids without the EOS was {miscount(used, len(ids))}", sent=ex.request,
            got=f"usage.prompt_tokens {used} for {len(ids)} ids",
            expected=f"{len(ids)}: the server must not append {list(eos)} to token-id input")
        gap = 1.0 - float(got[0] @ text_vec) / max(
            float((got[0] @ got[0]) ** 0.5 * (text_vec @ text_vec) ** 0.5), 1e-30)
        assert gap > api.tolerance, api.finding(
            "token ids without the EOS silently match the text", sent=ex.request,
            got=f"1 - cosine {gap:.3g} to the embedding of {text!r}",
            expected=f"a different vector (1 - cosine > {api.tolerance:g}): the text ends with "
                     f"EOS {list(eos)}, these ids do not, and the last token is the one pooled")
