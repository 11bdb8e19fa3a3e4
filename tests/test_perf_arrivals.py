"""Open-loop arrival schedules (issue 13): Poisson, constant, gamma with a burstiness factor as
`vllm bench serve` draws it, and trace replay; the same arguments give the same offsets."""

import numpy as np
import pytest

from embedgate.perf.arrivals import (ArrivalError, Arrivals, parse_arrivals, realized_rate,
                                     schedule_digest, trace_offsets)


def test_constant_arrivals_are_evenly_spaced_from_zero():
    offsets = Arrivals("constant", 200.0).offsets(5)
    assert offsets.tolist() == pytest.approx([0.0, 0.005, 0.010, 0.015, 0.020])


def test_poisson_gaps_have_the_rate_as_mean_and_cv_one():
    gaps = np.diff(Arrivals("poisson", 50.0, seed=3).offsets(20_001))
    assert gaps.mean() == pytest.approx(1 / 50, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("burstiness, cv", [(0.25, 2.0), (4.0, 0.5)])
def test_gamma_burstiness_sets_the_spread_but_keeps_the_rate(burstiness, cv):
    # gamma shape k has coefficient of variation 1/sqrt(k): below 1 burstier, above 1 smoother
    gaps = np.diff(Arrivals("gamma", 100.0, burstiness, seed=1).offsets(40_001))
    assert gaps.mean() == pytest.approx(0.01, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.06)


def test_same_arguments_give_the_same_schedule_and_digest():
    a = Arrivals("poisson", 80.0, seed=7).offsets(500)
    b = Arrivals("poisson", 80.0, seed=7).offsets(500)
    c = Arrivals("poisson", 80.0, seed=8).offsets(500)
    assert np.array_equal(a, b) and schedule_digest(a) == schedule_digest(b)
    assert schedule_digest(a) != schedule_digest(c)


def test_realized_rate_is_the_schedules_own_rate():
    offsets = Arrivals("constant", 40.0).offsets(41)
    assert realized_rate(offsets) == pytest.approx(40.0)
    assert realized_rate(np.array([0.0])) is None


def test_trace_replays_relative_timestamps_and_rescales_to_a_rate():
    stamps = [100.0, 100.5, 101.0, 103.0]
    assert trace_offsets(stamps, 4).tolist() == [0.0, 0.5, 1.0, 3.0]
    scaled = trace_offsets(stamps, 4, rate_rps=3.0)  # 3 gaps over 3 s is 1/s; at 3/s, 1 s
    assert scaled.tolist() == pytest.approx([0.0, 1 / 6, 1 / 3, 1.0])


def test_trace_cycles_when_more_requests_than_timestamps():
    out = trace_offsets([0.0, 1.0], 5)
    assert out.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_trace_arrivals_need_ordered_timestamps():
    with pytest.raises(ArrivalError, match="non-decreasing"):
        Arrivals("trace", 5.0).offsets(3, trace=[0.0, 2.0, 1.0])


@pytest.mark.parametrize("text, kind, burst", [("poisson", "poisson", 1.0),
                                               ("constant", "constant", 1.0),
                                               ("gamma:0.5", "gamma", 0.5)])
def test_parse_arrivals(text, kind, burst):
    spec = parse_arrivals(text, rate_rps=10, seed=2)
    assert (spec.kind, spec.burstiness, spec.rate_rps, spec.seed) == (kind, burst, 10, 2)


@pytest.mark.parametrize("text, message", [("gamma", "give the burstiness"),
                                           ("poisson:2", "only gamma"),
                                           ("uniform", "expected one of"),
                                           ("gamma:-1", "burstiness must be > 0")])
def test_parse_arrivals_refuses_bad_specs(text, message):
    with pytest.raises(ArrivalError, match=message):
        parse_arrivals(text)
