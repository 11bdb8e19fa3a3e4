"""Every input form the API allows, and base64 output, must mean the same thing.

Spec: OpenAI `input` is a string, an array of strings, an array of token ids or an array of
token-id arrays; `encoding_format=base64` is the float32 vector, little-endian (issue 4, "Inputs").
"""

import numpy as np
import pytest

from embedgate.api.findings import miscount

pytestmark = pytest.mark.api

TEXTS = ["The cat sat on the mat.", "東京は日本の首都です。", "Ein Hund läuft im Park."]


def test_input_string_equals_list_of_one(api):
    """A bare string and [string] are the same request in the OpenAI API."""
    bare, ex = api.embed(TEXTS[0])
    listed, _ = api.embed([TEXTS[0]])
    api.assert_agree(bare, listed, what="a bare string embeds differently from [string]",
                     sent=ex.request, labels=["input"], want_name="the [string] answer")


@pytest.mark.parametrize("form", ["one_list_of_ids", "list_of_id_lists"])
def test_input_token_ids_embed_like_their_text(api, reference_tokenizer, form):
    """Pre-tokenised input (the model's own ids, specials included) must equal the text."""
    if not api.token_ids:
        pytest.skip(f"profile {api.profile.name!r} says [api] token_ids = false")
    ids = [reference_tokenizer.ids(t) for t in TEXTS]
    text_vectors = api.alone(TEXTS)
    if form == "one_list_of_ids":
        got = np.vstack([api.embed(one)[0] for one in ids])
        ex = api.post({"input": ids[0]})
    else:
        got, ex = api.embed(ids)
    api.assert_agree(got, text_vectors, what="token ids embed differently from their text",
                     sent=ex.request, labels=TEXTS, want_name="the text's embedding")
    usage = (ex.body or {}).get("usage", {}).get("prompt_tokens")
    want = len(ids[0]) if form == "one_list_of_ids" else sum(map(len, ids))
    assert usage == want, api.finding(
        f"usage of token-id input was {miscount(usage, want)}", sent=ex.request,
        got=f"prompt_tokens {usage!r}", expected=f"{want}, the number of ids sent")


def test_encoding_base64_decodes_to_the_float_answer(api):
    """base64 must be little-endian float32 of the very same vector (issue 4, "Inputs")."""
    floats, _ = api.embed(TEXTS, encoding_format="float")
    decoded, ex = api.embed(TEXTS, encoding_format="base64")  # checks strings of whole floats
    finite = np.all(np.isfinite(decoded))
    worst = float(np.max(np.abs(decoded - floats))) if finite else float("inf")
    assert worst <= 1e-6, api.finding(
        "base64 does not decode to the float answer", sent=ex.request,
        got=f"max |base64 - float| = {worst:.3g}; item 0 decodes to "
            f"{np.round(decoded[0, :3], 6).tolist()}, the float answer starts "
            f"{np.round(floats[0, :3], 6).tolist()}",
        expected="little-endian float32 bytes of the same values (max difference <= 1e-6)")
