"""`dimensions` (Matryoshka): honoured exactly where the model supports it, refused elsewhere.

Spec: OpenAI `dimensions`; for Matryoshka models the answer is the full vector's prefix,
re-normalised (issue 4, cosine >= 1 - 1e-5 at fp32). Sizes the profile does not list, 0, negative
sizes and sizes above the model's, and any size on a model without Matryoshka, must get a 4xx:
an ignored `dimensions` hands back vectors of a length the client's index will not accept.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.api

TEXTS = ["The cat sat on the mat.", "银行在河边。", "Embeddings map text to vectors.",
         "¿Dónde está la biblioteca?"]


def unsupported_sizes(profile) -> list[int]:
    dim, listed = profile.embedding_dim, set(profile.matryoshka_dims)
    sizes = {0, -1, dim + 1, 2 * dim}
    if not listed:
        return sorted(sizes | {1, dim // 2, dim})  # any size, even the full one
    gaps = [d + 1 for d in listed if d + 1 not in listed and d + 1 <= dim]
    return sorted(sizes | set(gaps[:2]))


def test_dimensions_supported_sizes_are_renormalised_prefixes(api):
    """Each listed size: that many values, equal to the full vector's prefix re-normalised."""
    if not api.profile.matryoshka_dims:
        pytest.skip(f"profile {api.profile.name!r} lists no matryoshka_dims: every size must be "
                    f"refused (test_dimensions_unsupported_sizes_are_refused)")
    full, _ = api.embed(TEXTS)
    for dim in api.profile.matryoshka_dims:
        cut, ex = api.embed(TEXTS, dimensions=dim)
        assert cut.shape == (len(TEXTS), dim), api.finding(
            f"dimensions={dim} returned vectors of another length", sent=ex.request,
            got=f"shape {cut.shape}", expected=f"{len(TEXTS)} vectors of {dim} values")
        prefix = full[:, :dim]
        if api.profile.normalize:
            prefix = prefix / np.linalg.norm(prefix, axis=1, keepdims=True)
        api.assert_agree(cut, prefix, what=f"dimensions={dim} is not the full vector's prefix",
                         sent=ex.request, labels=TEXTS,
                         want_name=f"the first {dim} values of the full embedding"
                                   + (", re-normalised" if api.profile.normalize else ""))


def test_dimensions_unsupported_sizes_are_refused(api):
    """0, -1, too big, unlisted, or any size without Matryoshka: a 4xx, each time."""
    accepted = []
    for size in unsupported_sizes(api.profile):
        ex = api.post({"input": TEXTS[:1], "dimensions": size})
        if not ex.refused:  # the body's shape is test_error_bodies_follow_the_openai_shape's
            accepted.append(f"dimensions={size} {ex.outcome()}: {ex.answer()}")
    listed = list(api.profile.matryoshka_dims) or "none"
    assert not accepted, api.finding(
        "unsupported `dimensions` were not refused",
        sent=f"POST /v1/embeddings {{input=[{TEXTS[0]!r}], dimensions=each of "
             f"{unsupported_sizes(api.profile)}}}",
        got="; ".join(accepted[:4]),
        expected=f"a 4xx refusal for each: profile {api.profile.name!r} supports "
                 f"matryoshka_dims {listed} of {api.profile.embedding_dim}")
