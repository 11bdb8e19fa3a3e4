"""The `[api]` table of model profiles (issue 4): how the server must answer the api suite."""

import pytest

from embedgate.model_profiles import ProfileError, available_profiles, load_profile

HEAD = 'name="x"\nserved_name="x"\nembedding_dim=8\nmax_tokens=16\npooling="cls"\n'


@pytest.mark.parametrize("name", available_profiles())
def test_api_table_is_shipped_in_every_profile(name):
    profile = load_profile(name)
    assert profile.api_setting("token_ids") is True
    assert profile.api_setting("over_limit") == "reject"  # vLLM's and SGLang's default


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
    assert (bare.api_setting("token_ids"), bare.api_setting("over_limit")) == (True, "reject")
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
