"""Option resolution (issue #2): command line > env > [tool.embedgate] > default, errors name the source."""

from pathlib import Path

import pytest

from embedgate.settings import OPTIONS, SettingsError, read_config_table, resolve

ROOT = Path("/proj")


def test_settings_precedence_cli_over_env_over_config_over_default():
    cli = {"backend": "hf"}
    env = {"EMBEDGATE_BACKEND": "vllm", "EMBEDGATE_PROFILE": "bge-m3"}
    config = {"backend": "sglang", "profile": "tiny-qwen3", "startup_timeout": 42}
    s = resolve(cli, env, config, ROOT)
    assert (s.backend, s.profile, s.startup_timeout) == ("hf", "bge-m3", 42.0)
    assert s.sources["backend"] == "--backend"
    assert s.sources["profile"] == "env EMBEDGATE_PROFILE"
    assert s.sources["startup_timeout"] == "[tool.embedgate] startup_timeout"
    assert s.sources["model"] == "default" and s.model is None


def test_settings_relative_dirs_resolve_against_rootdir():
    s = resolve({"reports_dir": "out"}, {}, {}, ROOT)
    assert s.reports_dir == ROOT / "out"
    assert s.cache_dir == ROOT / ".embedgate_cache"


def test_settings_invalid_value_names_its_source():
    with pytest.raises(SettingsError, match=r"--startup-timeout: 'soon' \(from env "
                                            r"EMBEDGATE_STARTUP_TIMEOUT\)"):
        resolve({}, {"EMBEDGATE_STARTUP_TIMEOUT": "soon"}, {}, ROOT)
    with pytest.raises(SettingsError, match=r"--backend: 'tgi' \(from --backend\) must be one of"):
        resolve({"backend": "tgi"}, {}, {}, ROOT)
    with pytest.raises(SettingsError, match="positive"):
        resolve({"startup_timeout": "0"}, {}, {}, ROOT)


def test_settings_server_url_implies_external_and_external_needs_url():
    s = resolve({"server_url": "http://127.0.0.1:9/"}, {}, {}, ROOT)
    assert s.backend == "external" and s.server_url == "http://127.0.0.1:9"
    with pytest.raises(SettingsError, match="needs --server-url"):
        resolve({"backend": "external"}, {}, {}, ROOT)
    with pytest.raises(SettingsError, match="only for --backend external"):
        resolve({"backend": "vllm", "server_url": "http://127.0.0.1:9"}, {}, {}, ROOT)


def test_settings_server_args_repeatable_on_cli_and_shell_quoted_in_env():
    s = resolve({"server_args": ["--max-num-seqs=8", "--enforce-eager"]}, {}, {}, ROOT)
    assert s.server_args == ("--max-num-seqs=8", "--enforce-eager")
    s = resolve({"server_args": []}, {"EMBEDGATE_SERVER_ARGS": "--a 1 --b 'x y'"}, {}, ROOT)
    assert s.server_args == ("--a", "1", "--b", "x y")


def test_settings_api_key_only_from_env_and_never_in_repr():
    s = resolve({}, {"EMBEDGATE_API_KEY": "sk-secret-123"}, {}, ROOT)
    assert s.api_key == "sk-secret-123"
    assert "sk-secret-123" not in repr(s)
    assert not any(spec.dest == "api_key" for spec in OPTIONS)  # no CLI flag, no config key


def test_settings_config_table_rejects_unknown_keys(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.embedgate]\nbackend = "hf"\nbakend = "x"\n')
    with pytest.raises(SettingsError, match=r"unknown \[tool.embedgate\] key\(s\) \['bakend'\]"):
        read_config_table(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.embedgate]\nbackend = "hf"\n')
    assert read_config_table(tmp_path) == {"backend": "hf"}


def test_plugin_help_lists_every_option_with_env_and_default(pytester):
    result = pytester.runpytest("--help")
    out = result.stdout.str()
    for spec in OPTIONS:
        assert spec.flag in out and spec.env in out
    assert "embedgate:" in out and "Default:" in out


def test_plugin_markers_are_registered_for_strict_markers(pytester):
    pytester.makepyfile(
        "import pytest\n"
        "@pytest.mark.quality\ndef test_q(): pass\n"
        "@pytest.mark.api\ndef test_a(): pass\n"
        "@pytest.mark.perf\ndef test_p(): pass\n")
    result = pytester.runpytest("--strict-markers", "-m", "quality or api or perf")
    result.assert_outcomes(passed=3)


def test_plugin_bad_option_is_a_usage_error(pytester):
    result = pytester.runpytest("--backend", "tgi")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*embedgate: --backend: 'tgi' (from --backend) must be one of*"])
