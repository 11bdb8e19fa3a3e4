"""Model profiles (issue #2): facts live in data; every shipped profile loads and is consistent."""

import pytest

from embedgate.models.profiles import ProfileError, available_profiles, load_profile

SHIPPED = ["all-minilm-l6-v2", "tiny-qwen3", "qwen3-embedding-0.6b", "qwen3-embedding-4b",
           "qwen3-embedding-8b", "bge-m3", "bge-large-zh-v1.5", "mxbai-embed-large-v1"]


def test_profiles_all_required_models_are_shipped():
    assert set(SHIPPED) <= set(available_profiles())


@pytest.mark.parametrize("name", SHIPPED)
def test_profile_loads_with_consistent_facts(name):
    p = load_profile(name)
    assert p.name == name and p.served_name
    assert p.embedding_dim > 0 and p.max_tokens > 0
    assert all(0 < d <= p.embedding_dim for d in p.matryoshka_dims)
    if p.matryoshka_dims:
        assert p.matryoshka_dims[-1] == p.embedding_dim  # the full size is always a valid choice


@pytest.mark.parametrize("name,dim,max_tokens,pooling", [
    ("all-minilm-l6-v2", 384, 256, "mean"),
    ("qwen3-embedding-0.6b", 1024, 32768, "last"),
    ("qwen3-embedding-4b", 2560, 32768, "last"),
    ("qwen3-embedding-8b", 4096, 32768, "last"),
    ("bge-m3", 1024, 8192, "cls"),
    ("bge-large-zh-v1.5", 1024, 512, "cls"),
    ("mxbai-embed-large-v1", 1024, 512, "cls"),
])
def test_profile_model_card_facts(name, dim, max_tokens, pooling):
    p = load_profile(name)
    assert (p.embedding_dim, p.max_tokens, p.pooling) == (dim, max_tokens, pooling)


def test_profile_qwen3_instruction_on_queries_only():
    p = load_profile("qwen3-embedding-0.6b")
    assert p.format_query("what is a bank?", task="Retrieve passages") == \
        "Instruct: Retrieve passages\nQuery:what is a bank?"
    assert p.format_document("A bank holds money.") == "A bank holds money."
    assert load_profile("all-minilm-l6-v2").format_query("q", task="t") == "q"


def test_profile_by_path_and_unknown_name(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name="mine"\nserved_name="m"\nembedding_dim=8\nmax_tokens=16\npooling="cls"\n')
    assert load_profile(path).served_name == "m"
    with pytest.raises(ProfileError, match="not found.*known profiles: .*all-minilm-l6-v2"):
        load_profile("no-such-model")


@pytest.mark.parametrize("body,match", [
    ('name="x"\nserved_name="x"\nembedding_dim=8\nmax_tokens=16\n', "missing required.*pooling"),
    ('name="x"\nserved_name="x"\nembedding_dim=8\nmax_tokens=16\npooling="max"\n', "pooling 'max'"),
    ('name="x"\nserved_name="x"\nembedding_dim=8\nmax_tokens=16\npooling="cls"\n'
     'matryoshka_dims=[4, 16]\n', "matryoshka_dims"),
    ('name="x"\nserved_name="x"\nembedding_dim=8\nmax_tokens=16\npooling="cls"\n'
     '[instructions]\nquery="Query: "\n', r"must contain \{text\}"),
    ('name = [', "not valid TOML"),
    ('name="x"\nserved_name="x"\nembedding_dim=8\nmax_tokens=16\npooling="cls"\n'
     '[not_applicable]\natec_zh = true\n', r"\[not_applicable\] \['atec_zh'\]: give the reason"),
    ('name="x"\nserved_name="x"\nembedding_dim=8\nmax_tokens=16\npooling="cls"\n'
     '[thresholds]\natec_zh = 0.3\n[not_applicable]\natec_zh = "Chinese"\n',
     r"in both \[thresholds\] and \[not_applicable\]"),
])
def test_profile_malformed_is_refused_with_file_and_field(tmp_path, body, match):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ProfileError, match=match) as exc:
        load_profile(path)
    assert str(path) in str(exc.value)


def test_profile_missing_threshold_is_an_error_not_a_pass():
    p = load_profile("all-minilm-l6-v2")
    assert p.threshold("sts_en") > 0
    with pytest.raises(ProfileError, match="no \\[thresholds\\] nope"):
        p.threshold("nope")


def test_profile_english_only_models_mark_non_english_sets_not_applicable():
    """Issue 17: an unsupported language is not applicable, with its reason, never a bar."""
    for name in ("all-minilm-l6-v2", "all-mpnet-base-v2"):
        p = load_profile(name)
        assert set(p.not_applicable) == {"atec_zh", "xnli_multilingual", "xnli_crosslingual"}
        assert all(v.startswith("English-only model") for v in p.not_applicable.values())
        assert not set(p.not_applicable) & set(p.thresholds)
