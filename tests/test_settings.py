"""Kit options: command line > env > [tool.embedgate] > default, errors name the source, paths
follow where they were written."""

from pathlib import Path

import pytest

from embedgate.config.options import PathBase, read_config_table
from embedgate.config.settings import OPTIONS, SettingsError
from embedgate.config.settings import resolve as resolve_settings
from embedgate.perf.options import OPTIONS as PERF_OPTIONS

ROOT = Path("/proj")
BASE = PathBase(ROOT, Path("/cwd"))


def resolve(cli, env, config, base=BASE):
    return resolve_settings(cli, env, config, base)


def test_settings_precedence_cli_over_env_over_config_over_default():
    cli = {"backend": "hf"}
    env = {"EMBEDGATE_BACKEND": "vllm", "EMBEDGATE_PROFILE": "bge-m3"}
    config = {"backend": "sglang", "profile": "tiny-qwen3", "startup_timeout": 42}
    s = resolve(cli, env, config)
    assert (s.backend, s.profile, s.startup_timeout) == ("hf", "bge-m3", 42.0)
    assert s.sources["backend"] == "--embedgate-backend"
    assert s.sources["profile"] == "env EMBEDGATE_PROFILE"
    assert s.sources["startup_timeout"] == "[tool.embedgate] startup_timeout"
    assert s.sources["model"] == "default" and s.model is None


def test_settings_relative_dirs_follow_where_they_were_written():
    s = resolve({"reports_dir": "out"}, {"EMBEDGATE_BASELINE": "acc"}, {"cache_dir": "c"})
    assert s.reports_dir == Path("/cwd/out")          # command line: the invocation dir
    assert s.baseline == Path("/cwd/acc")             # environment: the invocation dir
    assert s.cache_dir == ROOT / "c"                  # [tool.embedgate]: the rootdir
    assert resolve({}, {}, {}).reports_dir == ROOT / "reports"  # default, with a config file
    outside = PathBase(ROOT, Path("/cwd"), has_config_file=False)
    assert resolve({}, {}, {}, outside).reports_dir == Path("/cwd/reports")  # an installed kit
    assert resolve({"reports_dir": "/abs"}, {}, {}).reports_dir == Path("/abs")


def test_settings_invalid_value_names_its_source():
    with pytest.raises(SettingsError, match=r"--embedgate-startup-timeout: 'soon' \(from env "
                                            r"EMBEDGATE_STARTUP_TIMEOUT\)"):
        resolve({}, {"EMBEDGATE_STARTUP_TIMEOUT": "soon"}, {})
    with pytest.raises(SettingsError, match=r"--embedgate-backend: 'tgi' \(from --embedgate-backend\) must be one of"):
        resolve({"backend": "tgi"}, {}, {})
    with pytest.raises(SettingsError, match="positive"):
        resolve({"startup_timeout": "0"}, {}, {})


def test_encode_batch_size_and_concurrency_reach_the_quality_client_only_when_set():
    from embedgate.plugin import encode_client_args
    from embedgate.serve.client import DEFAULT_BATCH_SIZE, EmbeddingClient
    assert encode_client_args(resolve({}, {}, {})) == {}
    assert EmbeddingClient("http://x", "m").batch_size == DEFAULT_BATCH_SIZE == 64
    s = resolve({"encode_batch_size": "16"}, {"EMBEDGATE_ENCODE_CONCURRENCY": "2"}, {})
    assert encode_client_args(s) == {"batch_size": 16, "concurrency": 2}
    assert s.sources["encode_concurrency"] == "env EMBEDGATE_ENCODE_CONCURRENCY"
    with pytest.raises(SettingsError, match=r"--embedgate-encode-batch-size: 0 \(from "
                                            r"\[tool.embedgate\] encode_batch_size\) must be"):
        resolve({}, {}, {"encode_batch_size": 0})


def test_settings_server_url_implies_external_and_external_needs_url():
    s = resolve({"server_url": "http://127.0.0.1:9/"}, {}, {})
    assert s.backend == "external" and s.server_url == "http://127.0.0.1:9"
    with pytest.raises(SettingsError, match="needs --embedgate-server-url"):
        resolve({"backend": "external"}, {}, {})
    with pytest.raises(SettingsError, match="only for --embedgate-backend external"):
        resolve({"backend": "vllm", "server_url": "http://127.0.0.1:9"}, {}, {})


def test_settings_server_args_repeatable_on_cli_and_shell_quoted_in_env():
    s = resolve({"server_args": ["--max-num-seqs=8", "--enforce-eager"]}, {}, {})
    assert s.server_args == ("--max-num-seqs=8", "--enforce-eager")
    s = resolve({"server_args": []}, {"EMBEDGATE_SERVER_ARGS": "--a 1 --b 'x y'"}, {})
    assert s.server_args == ("--a", "1", "--b", "x y")


def test_settings_api_key_only_from_env_and_never_in_repr():
    s = resolve({}, {"EMBEDGATE_API_KEY": "sk-secret-123"}, {})
    assert s.api_key == "sk-secret-123"
    assert "sk-secret-123" not in repr(s)
    assert not any(spec.dest == "api_key" for spec in OPTIONS)  # no CLI flag, no config key


def test_settings_config_table_rejects_unknown_keys_and_knows_the_perf_keys(tmp_path):
    known = OPTIONS + PERF_OPTIONS
    (tmp_path / "pyproject.toml").write_text('[tool.embedgate]\nbackend = "hf"\nbakend = "x"\n')
    with pytest.raises(SettingsError, match=r"unknown \[tool.embedgate\] key\(s\) \['bakend'\]"):
        read_config_table(tmp_path, known)
    (tmp_path / "pyproject.toml").write_text('[tool.embedgate]\nbackend = "hf"\nperf_rounds = 4\n')
    assert read_config_table(tmp_path, known) == {"backend": "hf", "perf_rounds": 4}


def test_every_option_of_the_kit_is_namespaced_and_has_all_three_spellings():
    specs = OPTIONS + PERF_OPTIONS
    assert len({s.flag for s in specs}) == len({s.dest for s in specs}) == len(specs)
    for spec in specs:
        assert spec.flag.startswith("--embedgate-") and spec.env == "EMBEDGATE_" + spec.dest.upper()
        assert f"Env: {spec.env}." in spec.help_text
        assert f"Config: [tool.embedgate] {spec.dest}." in spec.help_text


def test_plugin_help_lists_every_option_with_env_and_default(pytester):
    result = pytester.runpytest("--help")
    out = result.stdout.str()
    for spec in OPTIONS + PERF_OPTIONS:
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
    result = pytester.runpytest("--embedgate-backend", "tgi")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*embedgate: --embedgate-backend: 'tgi' (from --embedgate-backend) must be one of*"])


def test_perf_options_come_from_tool_embedgate_through_the_plugin(pytester):
    pytester.makepyprojecttoml('[tool.embedgate]\nperf_min_rounds = "zero"\n')
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert ("embedgate: --embedgate-perf-min-rounds: 'zero' (from [tool.embedgate] "
            "perf_min_rounds) must be an integer >= 1") in result.stderr.str()


def test_the_kit_loads_beside_pytest_profiling(pytester):
    """pytest-profiling owns --profile; the kit's options are namespaced, so both load."""
    pytest.importorskip("pytest_profiling")  # in the test extra; its entry point loads it
    pytester.makepyfile(
        "def test_both_plugins_are_loaded(pytestconfig):\n"
        "    assert pytestconfig.pluginmanager.hasplugin('profiling')\n"
        "    assert pytestconfig.pluginmanager.hasplugin('embedgate')\n"
        "    assert pytestconfig.getoption('embedgate_profile') == 'tiny-qwen3'\n"
        "    assert pytestconfig.getoption('profile') is False\n")
    result = pytester.runpytest("--help")
    assert result.ret == 0
    out = result.stdout.str()
    assert "--profile " in out and "--embedgate-profile" in out
    result = pytester.runpytest("--embedgate-profile", "tiny-qwen3")
    result.assert_outcomes(passed=1)
