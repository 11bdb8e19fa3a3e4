"""Perf options: command line > EMBEDGATE_PERF_* env > [tool.embedgate] > default, errors name
the source."""

from pathlib import Path

import pytest

from embedgate.config.options import PathBase
from embedgate.perf.options import OPTIONS, PerfOptionError
from embedgate.perf.options import resolve as resolve_perf


def resolve(cli, env, config, root):
    return resolve_perf(cli, env, config, PathBase(root, Path.cwd()))


def test_defaults_are_the_issue_defaults(tmp_path):
    opts = resolve({}, {}, {}, tmp_path)
    assert [r.text for r in opts.perf_rules] == ["p95_ms:+10%", "peak_memory_bytes:+10%",
                                                 "capacity/*:max_rate_rps:-10%"]
    assert (opts.perf_min_rounds, opts.perf_sample_ms, opts.perf_baseline) == (3, 20.0, None)
    assert all(v == "default" for v in opts.sources.values())


def test_cli_beats_env_beats_config(tmp_path):
    opts = resolve({"perf_min_rounds": "5"}, {"EMBEDGATE_PERF_MIN_ROUNDS": "4",
                                               "EMBEDGATE_PERF_SAMPLE_MS": "50"},
                   {"perf_min_rounds": "6", "perf_sample_ms": "10", "perf_rounds": "7"}, tmp_path)
    assert (opts.perf_min_rounds, opts.perf_sample_ms, opts.perf_rounds) == (5, 50.0, 7)
    assert opts.sources["perf_rounds"] == "[tool.embedgate] perf_rounds"


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


def test_relative_baseline_is_from_the_cwd_on_the_command_line_and_rootdir_in_config(tmp_path):
    assert resolve({"perf_baseline": "b.json"}, {}, {}, tmp_path).perf_baseline == \
        Path.cwd() / "b.json"
    assert resolve({}, {}, {"perf_baseline": "b.json"}, tmp_path).perf_baseline == \
        tmp_path / "b.json"


def test_every_option_has_an_env_twin_and_config_key_in_its_help():
    for spec in OPTIONS:
        assert spec.env.startswith("EMBEDGATE_PERF_") and spec.flag.startswith("--embedgate-perf-")
        assert f"Env: {spec.env}." in spec.help_text and "Default:" in spec.help_text
        assert f"Config: [tool.embedgate] {spec.dest}." in spec.help_text


def test_open_loop_defaults(tmp_path):
    load = resolve({}, {}, {}, tmp_path).load
    assert [r.text for r in load.perf_slo] == ["p95_ms<=100", "error_rate<=0"]
    assert load.perf_rates.of_capacity and load.perf_rates.values[0] == 0.1
    assert (load.perf_arrivals.kind, load.perf_max_in_flight, load.perf_on_full) == \
        ("poisson", 256, "queue")
    assert load.perf_batch_mix == ((1, 1.0),) and load.perf_workload is None


def test_open_loop_options_parse_from_each_source(tmp_path):
    load = resolve({"perf_slo": ["p99_ms<=80", "latency_ms<=200"], "perf_arrivals": "gamma:0.5"},
                   {"EMBEDGATE_PERF_RATES": "20,40,80", "EMBEDGATE_PERF_BATCH_MIX": "1:3,8:1"},
                   {"perf_workload": "data/reqs.jsonl"}, tmp_path).load
    assert [r.text for r in load.perf_slo] == ["p99_ms<=80", "latency_ms<=200"]
    assert load.perf_arrivals.burstiness == 0.5
    assert load.perf_rates.values == (20.0, 40.0, 80.0) and not load.perf_rates.of_capacity
    assert load.perf_batch_mix == ((1, 0.75), (8, 0.25))
    assert load.perf_workload == str(tmp_path / "data" / "reqs.jsonl")  # config: from rootdir


@pytest.mark.parametrize("cli, message", [
    ({"perf_slo": ["p95<=50"]}, r"--embedgate-perf-slo: 'p95<=50' .*expected METRIC"),
    ({"perf_rates": "10%,50"}, r"--embedgate-perf-rates: .*not mixed"),
    ({"perf_arrivals": "gamma"}, r"--embedgate-perf-arrivals: .*give the burstiness"),
    ({"perf_batch_mix": "0:1"}, r"--embedgate-perf-batch-mix: .*sizes must be >= 1"),
    ({"perf_on_full": "retry"}, r"--embedgate-perf-on-full: .*must be one of queue, drop"),
])
def test_bad_open_loop_values_name_the_flag(tmp_path, cli, message):
    with pytest.raises(PerfOptionError, match=message):
        resolve(cli, {}, {}, tmp_path)
