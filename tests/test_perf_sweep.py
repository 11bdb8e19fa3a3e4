"""Rate sweeps and the max sustainable rate (issue 13), on a simulated FIFO server: the sweep
finds saturation, the bounded search narrows it, an uncertain point is measured again, and a
server with half the capacity gets about half the max rate (so `max_rate_rps:-10%` fails it)."""

import numpy as np
import pytest

from embedgate.perf.slo import parse_slos
from embedgate.perf.sweep import CapacitySearch, rates_from_capacity
from perf_fakes import fifo_server, result_from

SLO = parse_slos(["p95_ms<=50", "error_rate<=0"])


def fifo_measure(service_s, calls=None, point_s=4.0):
    def measure(rate, attempt):
        if calls is not None:
            calls.append((rate, attempt))
        return fifo_server(rate, service_s=service_s, n=max(50, int(rate * point_s)),
                           seed=attempt)
    return measure


def test_sweep_finds_saturation_and_the_search_narrows_the_bracket():
    # 10 ms per request: saturates at 100 req/s; P95 <= 50 ms holds well below that
    search = CapacitySearch(fifo_measure(0.010), SLO)
    result = search.run(rates_from_capacity(100.0), searches=3)
    fig = result.figures()
    low, high = fig["sweep_bracket_rps"]
    assert result.saturated and low < high <= 125
    assert all(low <= e <= high for e in fig["max_rate_rps_rounds"])
    assert 60 <= fig["max_rate_rps_round_median"] <= 100
    assert fig["rounds"] == 3 and fig["max_rate_rps_round_spread_pct"] is not None
    curve = fig["load_curve"]
    assert [p["offered_rps"] for p in curve] == sorted(p["offered_rps"] for p in curve)
    top = max(curve, key=lambda p: p["offered_rps"])
    assert not top["sustainable"] and top["latency_p95_ms"] > 50  # P95 climbs past the SLO
    assert all(g is not None and g > 0 for g in fig["goodput_rps_rounds"])


@pytest.mark.parametrize("slo, low, high", [
    (["p95_ms<=1000", "error_rate<=0"], 0.4, 0.6),   # throughput-bound: half the capacity
    (["p95_ms<=50", "error_rate<=0"], 0.2, 0.6),     # latency-bound: slower service, even less
])
def test_half_the_capacity_gives_at_most_about_half_the_max_rate(slo, low, high):
    rules = parse_slos(slo)
    full = CapacitySearch(fifo_measure(0.010), rules).run(rates_from_capacity(100.0)).figures()
    half = CapacitySearch(fifo_measure(0.020), rules).run(rates_from_capacity(100.0)).figures()
    ratio = half["max_rate_rps_round_median"] / full["max_rate_rps_round_median"]
    assert low <= ratio <= high  # a max_rate_rps:-10% rule fails such a candidate


def test_an_uncertain_point_is_measured_again_and_pooled():
    lat = np.random.default_rng(0).permutation(np.linspace(0.040, 0.060, 400))
    calls = []

    def measure(rate, attempt):
        calls.append(attempt)
        return result_from(np.arange(400) / 100.0, lat)

    point = CapacitySearch(measure, parse_slos(["p95_ms<=59"]), max_repeats=2).point(100.0, "x")
    assert calls == [10_001, 10_002, 10_003] and len(point.runs) == 3
    assert point.figures()["requests_scheduled"] == 1200
    assert len(CapacitySearch(measure, parse_slos(["p95_ms<=59"])).point(100.0, "x").runs) == 2


def test_a_certain_point_is_measured_once():
    calls = []
    CapacitySearch(fifo_measure(0.001, calls), SLO).point(20.0, "x")
    assert len(calls) == 1


def test_the_sweep_stops_after_two_unsustainable_rates_in_a_row():
    calls = []
    CapacitySearch(fifo_measure(0.010, calls), SLO, steps=0).run(
        [10, 50, 150, 200, 300, 400], searches=1)
    assert sorted({r for r, _ in calls}) == [10, 50, 150, 200]


def test_a_server_that_never_saturates_gives_a_lower_bound():
    fig = CapacitySearch(fifo_measure(0.0001), SLO).run([10, 20, 40]).figures()
    assert fig["max_rate_is_lower_bound"] and not fig["saturated"]
    assert fig["max_rate_rps_round_median"] == 40 and "lower bound" in fig["saturation_note"]


def test_nothing_sustainable_gives_zero():
    def measure(rate, attempt):  # every answer over the SLO
        return result_from(np.arange(100) / rate, np.full(100, 0.5))

    fig = CapacitySearch(measure, SLO, steps=2).run([10, 20, 40], searches=2).figures()
    assert fig["max_rate_rps_round_median"] == 0.0 and fig["saturated"]


def test_the_run_budget_bounds_the_sweep_and_the_searches_still_run():
    calls = []
    search = CapacitySearch(fifo_measure(0.010, calls), SLO, max_points=2, steps=2,
                            max_repeats=1)
    fig = search.run([50, 150, 200, 250], searches=3).figures()
    sweep_calls = [c for c in calls if c[1] < 10_000]
    assert [r for r, _ in sweep_calls] == [50, 150] and "stopped after 2 runs" in fig["budget_note"]
    assert fig["rounds"] == 3 and len(calls) - len(sweep_calls) <= 3 * 2 * 2


def test_rates_from_capacity_are_fractions_of_it():
    assert rates_from_capacity(200.0, (0.1, 0.5, 1.2)) == [20.0, 100.0, 240.0]
    with pytest.raises(ValueError, match="capacity must be > 0"):
        rates_from_capacity(0.0)


def test_sweep_attempts_are_fixed_by_position_so_a_sweep_repeats_exactly():
    calls = []
    CapacitySearch(fifo_measure(0.010, calls), SLO, steps=0, max_repeats=2).sweep([10, 20])
    assert calls[0] == (10.0, 0) and calls[-1][0] == 20.0 and calls[-1][1] in (3, 4, 5)
