"""Perf statistics (issue 5, Figures): percentiles from raw per-request timings, round medians,
spread, and a downsampled memory series that keeps its peak."""

import numpy as np
import pytest

from embedgate.perf.stats import downsample_max, latency_figures, round_figures, spread_pct


def test_latency_percentiles_are_numpy_linear_in_milliseconds():
    seconds = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    figures = latency_figures(seconds)
    assert figures["latency_p50_ms"] == pytest.approx(50.5)
    assert figures["latency_p95_ms"] == pytest.approx(95.05)
    assert figures["latency_p99_ms"] == pytest.approx(99.01)
    assert figures["latency_max_ms"] == pytest.approx(100.0)
    assert figures["latency_min_ms"] == pytest.approx(1.0)
    assert figures["latency_mean_ms"] == pytest.approx(50.5)


def test_latency_figures_without_samples_are_none_not_zero():
    assert set(latency_figures([]).values()) == {None}


def test_latency_prefix_names_the_fields():
    assert "warm_p95_ms" in latency_figures([0.01], prefix="warm")


def test_round_figures_give_per_round_p95_and_their_median():
    rounds = [[0.010] * 19 + [0.020], [0.010] * 20, [0.010] * 19 + [0.100]]
    out = round_figures(rounds, walls_s=[1.0, 2.0, 1.0], items=[20, 20, 20],
                        tokens=[200, 200, 200])
    per_round = [float(np.percentile(np.asarray(r) * 1e3, 95)) for r in rounds]
    assert out["latency_p95_ms_rounds"] == pytest.approx(per_round)
    assert out["latency_p95_ms_round_median"] == pytest.approx(sorted(per_round)[1])
    assert out["throughput_rps_rounds"] == [20.0, 10.0, 20.0]
    assert out["throughput_rps_round_median"] == 20.0
    assert out["tokens_per_s_round_median"] == 200.0
    assert out["rounds"] == 3


def test_round_figures_without_token_counts_have_no_tokens_rate():
    out = round_figures([[0.01]], [1.0], [1], [None])
    assert out["tokens_per_s_round_median"] is None


def test_spread_is_range_over_median_in_percent():
    assert spread_pct([9.0, 10.0, 11.0]) == pytest.approx(20.0)
    assert spread_pct([10.0]) is None


def test_downsample_keeps_the_peak_and_bounds_the_points():
    times = list(range(10_000))
    values = [1] * 10_000
    values[7_777] = 99
    t, v = downsample_max(times, values, 200)
    assert len(t) == len(v) == 200
    assert max(v) == 99 and t[v.index(99)] == 7_777


def test_downsample_leaves_short_series_alone_and_keeps_nulls():
    assert downsample_max([0.0, 1.0], [None, 5], 200) == ([0.0, 1.0], [None, 5.0])
