"""The perf gate library (issue 5, Gate): rule parsing, verdicts, noise guards and messages."""

import json

import pytest

from embedgate.perf.rules import (DEFAULT_RULES, RuleError, check, evaluate, figures_from_benchmark_json,
                            load_baseline, machine_differences, parse_rule, parse_rules, rules_for)


def figs(**values):
    return {"rounds": 5, "peak_memory_source": "psutil: PSS", **values}


# -- parsing --------------------------------------------------------------------------------------
def test_rule_percent_rise_parses():
    rule = parse_rule("p95_ms:+10%")
    assert (rule.metric, rule.amount, rule.relative, rule.rise_fails, rule.scope) == (
        "p95_ms", 10.0, True, True, None)
    assert rule.field == "latency_p95_ms_round_median"


def test_rule_without_sign_takes_the_metric_direction():
    assert parse_rule("peak_memory_bytes:10%").rise_fails is True
    assert parse_rule("throughput_rps:10%").rise_fails is False
    assert parse_rule("tokens_per_s:5%").rise_fails is False


def test_rule_sign_overrides_the_direction():
    assert parse_rule("throughput_rps:+10%").rise_fails is True


def test_rule_absolute_amount_is_in_the_metric_unit():
    rule = parse_rule("p95_ms:+2")
    assert not rule.relative and rule.limit(20.0) == 22.0


def test_rule_with_scenario_glob_parses():
    rule = parse_rule("concurrency/*:p95_ms:+25%")
    assert rule.scope == "concurrency/*" and rule.applies_to("concurrency/64")
    assert not rule.applies_to("latency/short")


@pytest.mark.parametrize("text", ["p95_ms", "p95_ms:+", "p95_ms:ten%", ":+10%", "p95_ms:+10%%"])
def test_rule_malformed_is_refused_with_the_grammar(text):
    with pytest.raises(RuleError, match=r"expected \[SCENARIO:\]METRIC:\[\+\|-\]N\[%\]"):
        parse_rule(text)


def test_rule_unknown_metric_without_sign_is_refused():
    with pytest.raises(RuleError, match="no known direction"):
        parse_rule("mystery:10%")
    assert parse_rule("mystery:+10%").rise_fails  # any numeric extra_info field, with a sign


def test_default_rules_are_p95_and_peak_memory_plus_10_percent_and_capacity_minus_10():
    assert [r.text for r in parse_rules(DEFAULT_RULES)] == ["p95_ms:+10%",
                                                            "peak_memory_bytes:+10%",
                                                            "capacity/*:max_rate_rps:-10%"]


# -- verdicts -------------------------------------------------------------------------------------
def test_rise_within_limit_passes_and_beyond_fails():
    rule = parse_rule("p95_ms:+10%")
    base = figs(latency_p95_ms_round_median=20.0)
    assert check("s", rule, base, figs(latency_p95_ms_round_median=21.9)).status == "pass"
    assert check("s", rule, base, figs(latency_p95_ms_round_median=22.1)).status == "fail"


def test_fall_rule_fails_on_lower_throughput():
    rule = parse_rule("throughput_rps:-10%")
    base = figs(throughput_rps_round_median=100.0)
    assert check("s", rule, base, figs(throughput_rps_round_median=89.0)).status == "fail"
    assert check("s", rule, base, figs(throughput_rps_round_median=150.0)).status == "pass"


def test_failure_message_names_scenario_baseline_new_figure_and_rule():
    # Issue 5: "Failure messages name the scenario, the baseline figure, the new figure and the
    # rule."
    finding = check("latency/short", parse_rule("p95_ms:+10%"),
                    figs(latency_p95_ms_round_median=20.0), figs(latency_p95_ms_round_median=30.0))
    assert finding.message() == (
        "latency/short: p95_ms FAILED: baseline 20.00 ms, now 30.00 ms (+50.0%); "
        "rule p95_ms:+10% allows at most 22.00 ms")


def test_memory_message_is_in_mib():
    finding = check("batch/8", parse_rule("peak_memory_bytes:+10%"),
                    figs(peak_memory_bytes=1024 * 2**20), figs(peak_memory_bytes=1200 * 2**20))
    assert finding.status == "fail"
    assert "baseline 1024.0 MiB, now 1200.0 MiB" in finding.message()


def test_round_median_with_too_few_rounds_is_unjudged_and_fails_the_gate():
    """Fail closed (issue 17): a run with fewer rounds than the minimum cannot pass the gate."""
    rule = parse_rule("p95_ms:+10%")
    base = {"latency/short": figs(latency_p95_ms_round_median=20.0)}
    now = {"latency/short": {**figs(latency_p95_ms_round_median=20.0), "rounds": 2}}
    finding = check("latency/short", rule, base["latency/short"], now["latency/short"],
                    min_rounds=3)
    assert finding.status == "unjudged"
    assert "2 timed round(s) in the current run, the gate needs at least 3" in finding.reason
    report = evaluate(base, now, [rule], min_rounds=3)
    assert not report.ok and report.failures == [finding]
    assert report.lines()[1].startswith("FAIL latency/short: p95_ms UNJUDGED: 2 timed round(s)")


def test_unjudged_rules_pass_only_when_explicitly_allowed():
    rule = parse_rule("p95_ms:+10%")
    base = {"s": figs(latency_p95_ms_round_median=20.0)}
    now = {"s": {**figs(latency_p95_ms_round_median=20.0), "rounds": 1}}
    report = evaluate(base, now, [rule], allow_unjudged=True)
    assert report.ok and len(report.of("unjudged")) == 1
    assert report.lines()[0] == ("perf gate: 0 failed, 0 passed, 1 unjudged (allowed), 0 not "
                                 "gated (1 checks)")


def test_single_sample_scenario_is_left_out_of_round_medians_by_design():
    """startup has one sample per launch by design: not gated by P95, and not unjudged."""
    rule = parse_rule("p95_ms:+10%")
    single = {**figs(latency_p95_ms_round_median=90.0), "rounds": 1,
              "round_median_not_gated": "one cold sample per launch"}
    finding = check("startup", rule, figs(latency_p95_ms_round_median=20.0), single)
    assert finding.status == "skip" and finding.reason == "one cold sample per launch"
    assert evaluate({"startup": figs()}, {"startup": single}, [rule]).ok


def test_null_figure_is_unjudged_with_its_reason_never_compared_as_zero():
    rule = parse_rule("peak_vram_process_bytes:+10%")
    finding = check("batch/8", rule, figs(peak_vram_process_bytes=None,
                                          vram_null_reason="NVML is not available"),
                    figs(peak_vram_process_bytes=None, vram_null_reason="NVML is not available"))
    assert finding.status == "unjudged" and "NVML is not available" in finding.reason


def test_memory_of_different_kinds_is_not_compared():
    finding = check("batch/8", parse_rule("peak_memory_bytes:+10%"),
                    {"peak_memory_bytes": 100, "peak_memory_source": "nvml"},
                    {"peak_memory_bytes": 500, "peak_memory_source": "psutil: PSS"})
    assert finding.status == "unjudged" and "not comparable" in finding.reason


def test_gate_that_judged_nothing_fails():
    report = evaluate({"a": figs(latency_p95_ms_round_median=1.0)},
                      {"b": figs(latency_p95_ms_round_median=1.0)}, parse_rules(["p95_ms:+10%"]))
    assert not report.ok
    assert report.failures[0].message() == ("(all): any UNJUDGED: nothing was judged: no "
                                            "scenario of this run (1) is in the baseline (1)")


def test_scoped_rule_replaces_the_unscoped_one_for_its_scenarios():
    rules = parse_rules(["p95_ms:+10%", "concurrency/*:p95_ms:+30%", "peak_memory_bytes:+10%"])
    assert [r.text for r in rules_for("concurrency/4", rules)] == [
        "concurrency/*:p95_ms:+30%", "peak_memory_bytes:+10%"]
    assert [r.text for r in rules_for("latency/short", rules)] == [
        "p95_ms:+10%", "peak_memory_bytes:+10%"]


def test_evaluate_collects_every_failure_and_warns_on_unmatched_scenarios():
    base = {"a": figs(latency_p95_ms_round_median=10.0, peak_memory_bytes=100),
            "b": figs(latency_p95_ms_round_median=10.0, peak_memory_bytes=100),
            "gone": figs()}
    now = {"a": figs(latency_p95_ms_round_median=20.0, peak_memory_bytes=200),
           "b": figs(latency_p95_ms_round_median=10.0, peak_memory_bytes=100),
           "new": figs()}
    report = evaluate(base, now, parse_rules(DEFAULT_RULES))
    assert [(f.scenario, f.rule.metric) for f in report.failures] == [
        ("a", "p95_ms"), ("a", "peak_memory_bytes")]
    assert not report.ok
    assert report.warnings == ["new: not in the baseline, nothing to compare",
                               "gone: in the baseline but not run now"]
    assert report.lines()[0] == "perf gate: 2 failed, 2 passed, 0 unjudged, 0 not gated (4 checks)"


def test_same_figures_pass_every_default_rule():
    run = {"a": figs(latency_p95_ms_round_median=10.0, peak_memory_bytes=100)}
    assert evaluate(run, run, parse_rules(DEFAULT_RULES)).ok


# -- baseline files -------------------------------------------------------------------------------
def test_baseline_figures_are_keyed_by_the_kit_scenario_name(tmp_path):
    doc = {"machine_info": {"node": "ci"}, "benchmarks": [
        {"name": "test_latency[short]", "extra_info": {"scenario": "latency/short", "x": 1}},
        {"name": "test_plain", "extra_info": {}}]}
    path = tmp_path / "perf.json"
    path.write_text(json.dumps(doc))
    baseline = load_baseline(path)
    assert baseline.figures == {"latency/short": {"scenario": "latency/short", "x": 1},
                                "test_plain": {}}
    assert baseline.machine_info == {"node": "ci"}
    assert figures_from_benchmark_json(doc) == baseline.figures


def test_baseline_missing_or_not_benchmark_json_is_an_error(tmp_path):
    with pytest.raises(RuleError, match="not found"):
        load_baseline(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(RuleError, match="not a pytest-benchmark JSON"):
        load_baseline(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"results": []}')
    with pytest.raises(RuleError, match="no 'benchmarks' list"):
        load_baseline(tmp_path / "other.json")


def test_machine_differences_name_what_changed():
    old = {"node": "a", "machine": "x86_64", "system": "Linux", "python_version": "3.11.7",
           "cpu": {"brand_raw": "EPYC", "count": 2}}
    new = {**old, "node": "b", "cpu": {"brand_raw": "EPYC", "count": 16}}
    assert machine_differences(old, new) == ["host: baseline 'a', now 'b'",
                                             "CPU count: baseline 2, now 16"]
    assert machine_differences(old, old) == [] and machine_differences(None, new) == []


def test_verdict_notes_a_machine_kept_busy_by_other_processes():
    finding = check("concurrency/1", parse_rule("p95_ms:+10%"),
                    figs(latency_p95_ms_round_median=10.0, foreign_cpu_pct=3.0),
                    figs(latency_p95_ms_round_median=13.0, foreign_cpu_pct=85.0))
    assert finding.status == "fail"
    assert finding.message().endswith(
        "(machine busy: other processes used 85% of a core in this run)")


def test_scenario_not_gated_by_default_is_judged_only_by_scoped_rules():
    base = {"client_overhead/1": figs(latency_p95_ms_round_median=1.0,
                                      throughput_rps_round_median=100)}
    now = {"client_overhead/1": figs(latency_p95_ms_round_median=9.0,
                                     throughput_rps_round_median=50,
                                     gate_skip_reason="the kit's own client cost")}
    report = evaluate(base, now, parse_rules(DEFAULT_RULES))
    assert report.ok and report.findings == []
    assert report.notes == ["client_overhead/1: not gated by default: the kit's own client cost"]
    scoped = evaluate(base, now, parse_rules([*DEFAULT_RULES,
                                              "client_overhead/*:throughput_rps:-20%"]))
    assert [f.status for f in scoped.findings] == ["fail"]


def test_failure_notes_when_the_rule_is_tighter_than_the_scenario_noise():
    finding = check("concurrency/4", parse_rule("p95_ms:+10%"),
                    figs(latency_p95_ms_round_median=30.0, latency_p95_ms_round_spread_pct=73.0),
                    figs(latency_p95_ms_round_median=36.0, latency_p95_ms_round_spread_pct=20.0))
    assert finding.status == "fail"
    assert finding.message().endswith("(its rounds spread up to 73% within a run: the rule is "
                                      "tighter than this scenario's noise)")


def test_capacity_max_rate_is_gated_by_default_and_a_halved_capacity_fails():
    # issue 13: a candidate with half the capacity fails even when its idle latency is fine
    idle = {"latency_p95_ms_round_median": 12.0, "peak_memory_bytes": 2**31, "rounds": 3}
    base = {"capacity/open_loop": {**idle, "max_rate_rps_round_median": 200.0}}
    half = {"capacity/open_loop": {**idle, "max_rate_rps_round_median": 100.0}}
    same = {"capacity/open_loop": {**idle, "max_rate_rps_round_median": 195.0}}
    rules = parse_rules(DEFAULT_RULES)
    failed = evaluate(base, half, rules).failures
    assert [f.rule.text for f in failed] == ["capacity/*:max_rate_rps:-10%"]
    assert "baseline 200.0 req/s, now 100.0 req/s (-50.0%)" in failed[0].message()
    assert evaluate(base, same, rules).ok


def test_capacity_scenario_skips_unscoped_latency_rules_by_design_and_judges_its_max_rate():
    # its latency is per offered rate (load_curve), so p95_ms:+10% is skipped, never unjudged
    design = {"rounds": 3, "round_median_not_gated": "latency is per offered rate",
              "peak_memory_bytes": 1e9, "peak_memory_source": "pss"}
    base = {"capacity/open_loop": {"max_rate_rps_round_median": 200.0, **design}}
    same = {"capacity/open_loop": {"max_rate_rps_round_median": 195.0, **design}}
    report = evaluate(base, same, parse_rules(DEFAULT_RULES))
    assert report.ok and [f.status for f in report.findings] == ["skip", "pass", "pass"]
