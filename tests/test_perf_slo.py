"""SLO rules and the verdict on one offered rate (issue 13): P95 and error-rate rules, goodput
from per-request bounds, keep-up at 98% of the offered rate, and "uncertain" when an interval
straddles a bound, so the sweep measures again instead of trusting one noisy sample."""

import numpy as np
import pytest

from embedgate.perf.slo import SloError, evaluate, goodput_rps, parse_slo, parse_slos
from perf_fakes import fifo_server, result_from

OFFSETS = np.arange(400) / 100.0  # 100 req/s for 4 s


def test_parse_slo_rules():
    rule = parse_slo("p95_ms<=50")
    assert (rule.metric, rule.op, rule.bound, rule.quantile) == ("p95_ms", "<=", 50.0, 0.95)
    assert parse_slo("latency_ms < 200").per_request
    assert parse_slo("error_rate<=0.01").bound == 0.01
    assert parse_slo("p99.9_ms<=80").quantile == pytest.approx(0.999)


@pytest.mark.parametrize("text, message", [("p95<=50", "expected METRIC"),
                                           ("error_rate<=5", "a share"),
                                           ("latency_ms>=10", "upper bound"),
                                           ("p95_ms=50", "expected METRIC")])
def test_parse_slo_refuses_bad_rules(text, message):
    with pytest.raises(SloError, match=message):
        parse_slo(text)


def test_an_slo_needs_a_rule():
    with pytest.raises(SloError, match="at least one rule"):
        parse_slos([])


def test_point_under_its_p95_bound_passes_for_certain():
    lat = np.full(400, 0.010)
    verdict = evaluate([result_from(OFFSETS, lat)], parse_slos(["p95_ms<=50"]))
    assert verdict.passed and not verdict.uncertain
    assert verdict.figures["p95_ms"] == pytest.approx(10.0)


def test_point_over_its_p95_bound_fails_for_certain():
    verdict = evaluate([result_from(OFFSETS, np.full(400, 0.080))], parse_slos(["p95_ms<=50"]))
    assert not verdict.passed and not verdict.uncertain
    assert verdict.failing() == ["p95_ms 80 (needs <= 50)"]


def test_p95_at_the_bound_is_uncertain():
    # latencies spread evenly over 40-60 ms: P95 ~59 ms, its 95% interval spans 58.5-59.4 ms
    lat = np.random.default_rng(0).permutation(np.linspace(0.040, 0.060, 400))
    verdict = evaluate([result_from(OFFSETS, lat)], parse_slos(["p95_ms<=59"]))
    assert verdict.uncertain


def test_errors_and_drops_count_against_error_rate():
    ok = np.ones(400, bool)
    ok[:3] = False
    verdict = evaluate([result_from(OFFSETS, np.full(400, 0.01), ok=ok)],
                       parse_slos(["p95_ms<=50", "error_rate<=0"]))
    assert not verdict.passed and verdict.figures["error_rate"] == pytest.approx(3 / 400)
    assert not verdict.uncertain  # a zero-error rule is decided by the count


def test_goodput_counts_requests_within_the_per_request_bound():
    lat = np.where(np.arange(400) % 4 == 0, 0.3, 0.01)  # a quarter over 200 ms
    verdict = evaluate([result_from(OFFSETS, lat)], parse_slos(["latency_ms<=200",
                                                               "goodput_pct>=70"]))
    assert verdict.figures["good_requests"] == 300 and verdict.passed
    assert goodput_rps(100.0, verdict.figures) == pytest.approx(75.0)


def test_goodput_without_a_per_request_bound_uses_the_percentile_bound():
    lat = np.where(np.arange(400) % 10 == 0, 0.06, 0.01)
    verdict = evaluate([result_from(OFFSETS, lat)], parse_slos(["p95_ms<=100", "p50_ms<=50"]))
    assert verdict.figures["good_latency_bound_ms"] == 50 and verdict.figures["good_requests"] == 360


def test_a_server_that_cannot_keep_up_fails_keep_up_even_with_low_latency_figures():
    # offered 200 req/s into a 100 req/s server: answers come at half the offered rate
    result = fifo_server(200.0, service_s=0.01, n=400, seed=1)
    verdict = evaluate([result], parse_slos(["p95_ms<=100000"]))
    check = next(c for c in verdict.checks if c.name == "keep_up_ratio")
    assert not check.passed and check.value == pytest.approx(0.5, abs=0.05)


def test_a_server_that_keeps_up_passes_keep_up():
    verdict = evaluate([fifo_server(50.0, service_s=0.01, n=400, seed=1)],
                       parse_slos(["p95_ms<=100"]))
    check = next(c for c in verdict.checks if c.name == "keep_up_ratio")
    assert check.passed and check.value == pytest.approx(1.0, abs=0.02)


def test_repeats_pool_their_requests():
    runs = [result_from(OFFSETS, np.full(400, 0.010)), result_from(OFFSETS, np.full(400, 0.030))]
    verdict = evaluate(runs, parse_slos(["p50_ms<=100"]))
    assert verdict.figures["requests_scheduled"] == 800 and verdict.figures["repeats"] == 2
    assert verdict.figures["p50_ms"] == pytest.approx(20.0)


def test_failures_in_the_second_half_count_against_keep_up():
    ok = np.arange(400) < 200  # the server answers the first half at full rate, then fails
    verdict = evaluate([result_from(OFFSETS, np.full(400, 0.01), ok=ok)],
                       parse_slos(["p95_ms<=50"]))  # no error-rate rule given
    assert not verdict.passed
    assert verdict.figures["keep_up_ratio"] == pytest.approx(0.5)


def test_a_certain_failure_is_not_uncertain_even_when_another_check_is():
    # P95 far over its bound decides the point, however noisy keep-up is
    lat = np.where(np.arange(400) % 2 == 0, 0.5, 0.01)
    verdict = evaluate([result_from(OFFSETS, lat)], parse_slos(["p50_ms<=5"]))
    assert not verdict.passed and not verdict.uncertain
