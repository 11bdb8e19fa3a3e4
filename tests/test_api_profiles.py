"""The `[api]` table of model profiles: where a model's server must answer the api suite otherwise
than its backend documents (fixtures/backends/*.toml)."""

import pytest

from embedgate.models.profiles import ProfileError, available_profiles, load_profile

HEAD = 'name="x"\nserved_name="x"\nembedding_dim=8\nmax_tokens=16\npooling="cls"\n'


@pytest.mark.parametrize("name", available_profiles())
def test_api_table_leaves_backend_behaviour_to_the_backend_tables(name):
    """token_ids and over_limit are what the serving engine does: no shipped profile restates
    them, so the backend's table (reject, token ids on) decides."""
    profile = load_profile(name)
    assert profile.api_setting("token_ids") is None
    assert profile.api_setting("over_limit") is None


@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-5), ("bfloat16", 1e-2),
                                             ("float16", 1e-2)])
def test_api_tolerance_follows_the_dtype_like_vllm_tests(tmp_path, dtype, tolerance):
    path = tmp_path / "p.toml"
    path.write_text(HEAD + f'dtype="{dtype}"\n')
    assert load_profile(path).api_setting("tolerance") == tolerance


def test_api_defaults_and_overrides(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(HEAD)
    bare = load_profile(path)
    assert (bare.api_setting("token_ids"), bare.api_setting("over_limit")) == (None, None)
    path.write_text(HEAD + '[api]\ntoken_ids=false\nover_limit="either"\ntolerance=1e-3\n')
    set_ = load_profile(path)
    assert (set_.api_setting("token_ids"), set_.api_setting("over_limit"),
            set_.api_setting("tolerance")) == (False, "either", 1e-3)


@pytest.mark.parametrize("table,match", [
    ('[api]\nover_limit="drop"\n', "over_limit 'drop' is not one of"),
    ('[api]\ntoken_ids="yes"\n', "token_ids must be true or false"),
    ('[api]\ntolerance=0\n', "tolerance 0 must be a number in \\(0, 1\\)"),
    ('[api]\ntolerance=true\n', "tolerance True must be"),
    ('[api]\ntolerence=0.1\n', "unknown \\[api\\] key\\(s\\) \\['tolerence'\\]"),
])
def test_api_table_mistakes_are_refused_with_file_and_field(tmp_path, table, match):
    path = tmp_path / "p.toml"
    path.write_text(HEAD + table)
    with pytest.raises(ProfileError, match=match):
        load_profile(path)


def test_api_tolerance_follows_the_dtype_the_server_really_serves(tmp_path):
    """vLLM and hf on CPU serve float32 for a bfloat16 profile: the suite holds them to 1e-5."""
    profile = load_profile("qwen3-embedding-0.6b")
    assert profile.dtype == "bfloat16"
    assert profile.api_tolerance() == 1e-2                      # nothing known about the server
    assert profile.api_tolerance("float32") == 1e-5             # what vLLM CPU serves
    assert profile.api_tolerance("bfloat16") == 1e-2            # vLLM / SGLang on a GPU
    path = tmp_path / "p.toml"
    path.write_text(HEAD + 'dtype="bfloat16"\n[api]\ntolerance=1e-3\n')
    assert load_profile(path).api_tolerance("float32") == 1e-3  # the profile's own word wins
