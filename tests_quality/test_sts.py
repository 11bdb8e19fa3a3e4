"""STS quality on the kit's own English pairs: Spearman(cosine, gold) vs the profile threshold.

The metric is MTEB's STS main score; the threshold comes from the model profile.
"""

from pathlib import Path

import pytest

from embedgate.datasets import load_pair_tsv
from embedgate.metrics import cosine_rows, pearson, spearman

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"


@pytest.mark.quality
def test_sts_en_spearman_meets_profile_threshold(embedding_client, model_profile):
    data = load_pair_tsv(FIXTURES / "sts_en.tsv")
    left = embedding_client.embed([model_profile.format_document(t) for t in data.sentence1])
    right = embedding_client.embed([model_profile.format_document(t) for t in data.sentence2])
    cos = cosine_rows(left, right)
    rho, r = spearman(cos, data.gold), pearson(cos, data.gold)
    threshold = model_profile.threshold("sts_en_spearman")
    assert rho >= threshold, (
        f"{data.name}: Spearman {rho:.4f} (Pearson {r:.4f}) is below the threshold "
        f"{threshold} of profile {model_profile.name!r} (n={len(data)}, sha256 {data.sha256[:12]})")
