"""First API contract checks: response shape, order, usage and `dimensions` handling.

OpenAI embeddings API: `data[i]` has object "embedding", `index` i and a vector of the model's
dimension; `usage` counts tokens; `dimensions` is honoured only for Matryoshka models.
"""

import numpy as np
import pytest

TEXTS = ["The cat sat on the mat.", "银行在河边。", "A much longer sentence about embeddings, "
         "servers and the order in which their answers come back."]


@pytest.mark.api
def test_embeddings_response_shape_order_and_usage(embedding_client, model_profile):
    response = embedding_client.post_embeddings(
        {"model": model_profile.served_name, "input": TEXTS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == model_profile.served_name
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in body["data"])
    vectors = np.array([d["embedding"] for d in body["data"]], dtype=np.float64)
    assert vectors.shape == (3, model_profile.embedding_dim)
    assert np.all(np.isfinite(vectors))
    if model_profile.normalize:
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # Order: each item must be the embedding of the text at its index.
    singles = np.vstack([embedding_client.embed([t]) for t in TEXTS])
    np.testing.assert_allclose(vectors, singles, atol=1e-4)
    usage = body["usage"]
    assert usage["prompt_tokens"] >= len(TEXTS) and usage["total_tokens"] >= usage["prompt_tokens"]


@pytest.mark.api
def test_dimensions_follow_the_profile(embedding_client, model_profile):
    if not model_profile.matryoshka_dims:
        response = embedding_client.post_embeddings(
            {"model": model_profile.served_name, "input": ["x"], "dimensions": 8})
        assert 400 <= response.status_code < 500, (
            f"dimensions=8 on a model without Matryoshka dims: expected a 4xx, got "
            f"{response.status_code}: {response.text[:300]}")
        return
    full = embedding_client.embed(TEXTS)
    for dim in model_profile.matryoshka_dims:
        cut = embedding_client.embed(TEXTS, dimensions=dim)
        assert cut.shape == (len(TEXTS), dim)
        prefix = full[:, :dim] / np.linalg.norm(full[:, :dim], axis=1, keepdims=True)
        cosine = np.sum(prefix * cut, axis=1) / np.linalg.norm(cut, axis=1)
        assert np.all(cosine >= 1 - 1e-5), f"dimensions={dim}: cosine to prefix {cosine}"
