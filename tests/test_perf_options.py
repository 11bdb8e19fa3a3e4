"""Perf options: command line > EMBEDGATE_PERF_* env > ini > default, errors name the source."""

from pathlib import Path

import pytest

from embedgate.perf.options import OPTIONS, PerfOptionError, resolve


def test_defaults_are_the_issue_defaults(tmp_path):
    opts = resolve({}, {}, {}, tmp_path)
    assert [r.text for r in opts.perf_rules] == ["p95_ms:+10%", "peak_memory_bytes:+10%"]
    assert (opts.perf_min_rounds, opts.perf_sample_ms, opts.perf_baseline) == (3, 20.0, None)
    assert all(v == "default" for v in opts.sources.values())


def test_cli_beats_env_beats_ini(tmp_path):
    opts = resolve({"perf_min_rounds": "5"}, {"EMBEDGATE_PERF_MIN_ROUNDS": "4",
                                               "EMBEDGATE_PERF_SAMPLE_MS": "50"},
                   {"perf_min_rounds": "6", "perf_sample_ms": "10", "perf_rounds": "7"}, tmp_path)
    assert (opts.perf_min_rounds, opts.perf_sample_ms, opts.perf_rounds) == (5, 50.0, 7)
    assert opts.sources["perf_rounds"] == "ini embedgate_perf_rounds"


def test_repeated_rules_replace_the_defaults(tmp_path):
    opts = resolve({"perf_rules": ["p99_ms:+20%", "concurrency/*:p95_ms:+30%"]}, {}, {}, tmp_path)
    assert [r.text for r in opts.perf_rules] == ["p99_ms:+20%", "concurrency/*:p95_ms:+30%"]


def test_env_rules_are_comma_or_space_separated_and_none_turns_them_off(tmp_path):
    opts = resolve({}, {"EMBEDGATE_PERF_RULES": "p95_ms:+5%, throughput_rps:-5%"}, {}, tmp_path)
    assert [r.text for r in opts.perf_rules] == ["p95_ms:+5%", "throughput_rps:-5%"]
    assert resolve({}, {"EMBEDGATE_PERF_RULES": "none"}, {}, tmp_path).perf_rules == ()


def test_bad_value_names_the_flag_and_its_source(tmp_path):
    with pytest.raises(PerfOptionError, match=r"--embedgate-perf-rule: 'p95' \(from env "
                                              r"EMBEDGATE_PERF_RULES\) rule 'p95': expected"):
        resolve({}, {"EMBEDGATE_PERF_RULES": "p95"}, {}, tmp_path)
    with pytest.raises(PerfOptionError, match=r"--embedgate-perf-sample-ms: '0' \(from "
                                              r"--embedgate-perf-sample-ms\) must be between"):
        resolve({"perf_sample_ms": "0"}, {}, {}, tmp_path)


def test_relative_baseline_is_from_the_cwd_on_the_command_line_and_rootdir_in_ini(tmp_path):
    assert resolve({"perf_baseline": "b.json"}, {}, {}, tmp_path).perf_baseline == \
        Path.cwd() / "b.json"
    assert resolve({}, {}, {"perf_baseline": "b.json"}, tmp_path).perf_baseline == \
        tmp_path / "b.json"


def test_every_option_has_an_env_twin_and_ini_key_in_its_help():
    for spec in OPTIONS:
        assert spec.env.startswith("EMBEDGATE_PERF_") and spec.ini.startswith("embedgate_perf_")
        assert f"Env: {spec.env}." in spec.help_text and "Default:" in spec.help_text
