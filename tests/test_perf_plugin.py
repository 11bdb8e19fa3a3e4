"""The perf plugin in real pytest sessions (pytester, with pytest-benchmark): the gate fails the
run with a clear message, passes the same figures, works with --benchmark-compare, lands in the
JSON, and the cold-start test runs first (issue 5, Gate)."""

import json

import pytest

FAKE_SCENARIO = """
import os
import pytest

@pytest.mark.perf
def test_fake(benchmark, perf_record):
    benchmark.pedantic(lambda: None, rounds=3)
    figures = {"scenario": "fake/one", "rounds": int(os.environ.get("FAKE_ROUNDS", "5")),
               "latency_p95_ms": float(os.environ["FAKE_P95"]),
               "latency_p95_ms_round_median": float(os.environ["FAKE_P95"]),
               "peak_memory_bytes": int(os.environ.get("FAKE_MEM", "1000")),
               "peak_memory_source": "psutil: PSS"}
    benchmark.extra_info.update(figures)
    perf_record("fake/one", figures)
"""


@pytest.fixture
def suite(pytester, monkeypatch):
    for key in ("EMBEDGATE_PERF_BASELINE", "EMBEDGATE_PERF_RULES", "EMBEDGATE_PERF_MIN_ROUNDS"):
        monkeypatch.delenv(key, raising=False)
    pytester.makepyfile(test_fake=FAKE_SCENARIO)
    return pytester


def run(suite, monkeypatch, p95, *args, mem=1000, rounds=5):
    monkeypatch.setenv("FAKE_P95", str(p95))
    monkeypatch.setenv("FAKE_MEM", str(mem))
    monkeypatch.setenv("FAKE_ROUNDS", str(rounds))
    return suite.runpytest("-p", "no:cacheprovider", *args)


def baseline(suite, monkeypatch, p95=10.0):
    result = run(suite, monkeypatch, p95, "--benchmark-json=base.json")
    assert result.ret == 0
    return suite.path / "base.json"


def test_gate_fails_the_run_and_names_scenario_figures_and_rule(suite, monkeypatch):
    base = baseline(suite, monkeypatch)
    result = run(suite, monkeypatch, 20.0, f"--embedgate-perf-baseline={base}",
                 "--benchmark-json=now.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*embedgate perf gate (baseline: *base.json)*",
        "perf gate: 1 failed, 1 passed, 0 unjudged, 0 not gated (2 checks)",
        "FAIL fake/one: p95_ms FAILED: baseline 10.00 ms, now 20.00 ms (+100.0%); "
        "rule p95_ms:+10% allows at most 11.00 ms"])
    gate = json.loads((suite.path / "now.json").read_text())["embedgate_perf"]["gate"]
    assert gate["ok"] is False and gate["findings"][0]["status"] == "fail"


def test_gate_passes_the_same_figures(suite, monkeypatch):
    base = baseline(suite, monkeypatch)
    result = run(suite, monkeypatch, 10.5, f"--embedgate-perf-baseline={base}")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["perf gate: 0 failed, 2 passed, 0 unjudged, 0 not gated (2 checks)"])


def test_gate_peak_memory_rule_fails_on_more_memory(suite, monkeypatch):
    base = baseline(suite, monkeypatch)
    result = run(suite, monkeypatch, 10.0, f"--embedgate-perf-baseline={base}", mem=1200)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["FAIL fake/one: peak_memory_bytes FAILED: *"])


def test_gate_fails_a_scenario_with_fewer_rounds_than_the_minimum(suite, monkeypatch):
    """Fail closed (issue 17): too few rounds to judge is not a pass."""
    base = baseline(suite, monkeypatch)
    result = run(suite, monkeypatch, 99.0, f"--embedgate-perf-baseline={base}", rounds=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["perf gate: 0 failed, 1 passed, 1 unjudged, 0 not gated *",
                                 "FAIL fake/one: p95_ms UNJUDGED: 2 timed round(s) in the "
                                 "current run, the gate needs at least 3"])


def test_gate_allows_unjudged_rules_only_when_asked(suite, monkeypatch):
    base = baseline(suite, monkeypatch)
    result = run(suite, monkeypatch, 99.0, f"--embedgate-perf-baseline={base}",
                 "--embedgate-perf-allow-unjudged", rounds=2)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["perf gate: 0 failed, 1 passed, 1 unjudged (allowed), *",
                                 "allowed fake/one: p95_ms UNJUDGED: 2 timed round(s)*"])


def test_gate_fails_when_pytest_benchmark_is_disabled(suite, monkeypatch):
    """--benchmark-disable runs nothing the gate can judge: the gate fails, saying so."""
    base = baseline(suite, monkeypatch)
    result = run(suite, monkeypatch, 10.0, f"--embedgate-perf-baseline={base}",
                 "--benchmark-disable")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["FAIL (all): any UNJUDGED: nothing was judged: pytest-benchmark "
                                 "is disabled*"])


def test_gate_rules_from_the_command_line_replace_the_defaults(suite, monkeypatch):
    base = baseline(suite, monkeypatch)
    result = run(suite, monkeypatch, 20.0, f"--embedgate-perf-baseline={base}",
                 "--embedgate-perf-rule=p95_ms:+150%")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["perf gate: 0 failed, 1 passed, 0 unjudged, 0 not gated (1 checks)"])


def test_benchmark_compare_run_is_the_kit_baseline_too(suite, monkeypatch):
    storage = f"--benchmark-storage=file://{suite.path / 'bench'}"
    assert run(suite, monkeypatch, 10.0, "--benchmark-autosave", storage).ret == 0
    result = run(suite, monkeypatch, 20.0, "--benchmark-compare", storage,
                 "--benchmark-compare-fail=mean:10000%")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*embedgate perf gate (baseline: the --benchmark-compare run)*",
                                 "FAIL fake/one: p95_ms FAILED: *"])


def test_json_carries_the_kit_section_without_a_baseline(suite, monkeypatch):
    base = baseline(suite, monkeypatch)
    doc = json.loads(base.read_text())
    assert doc["embedgate_perf"]["gate"] is None
    assert doc["embedgate_perf"]["options"]["rules"] == ["p95_ms:+10%", "peak_memory_bytes:+10%",
                                                         "capacity/*:max_rate_rps:-10%"]
    assert doc["benchmarks"][0]["extra_info"]["scenario"] == "fake/one"


def test_summary_prints_the_scenario_table(suite, monkeypatch):
    result = run(suite, monkeypatch, 10.0)
    result.stdout.fnmatch_lines(["*embedgate perf*", "scenario*p50 ms*p95 ms*peak memory*",
                                 "fake/one * 10.00 *"])


@pytest.mark.parametrize("args, message", [
    (["--embedgate-perf-rule=p95"], "embedgate: --embedgate-perf-rule: 'p95'"),
    (["--embedgate-perf-baseline=missing.json"], "--embedgate-perf-baseline: baseline *missing"
                                                  ".json not found"),
])
def test_bad_perf_option_is_a_usage_error(suite, monkeypatch, args, message):
    result = run(suite, monkeypatch, 10.0, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_cold_start_test_runs_before_every_other_test(pytester):
    pytester.makeconftest("""
        import pytest
        @pytest.fixture
        def perf_cold_start():
            return None
    """)
    pytester.makepyfile(test_order="""
        def test_a(): pass
        def test_b(): pass
        def test_cold(perf_cold_start): pass
    """)
    result = pytester.runpytest("-v", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*test_cold PASSED*", "*test_a PASSED*", "*test_b PASSED*"])


def test_perf_tests_skip_with_a_reason_without_pytest_benchmark(suite, monkeypatch):
    result = run(suite, monkeypatch, 10.0, "-p", "no:benchmark", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*pytest-benchmark is not installed*"])
