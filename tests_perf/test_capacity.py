"""Capacity under an SLO: open-loop arrivals swept over offered rates, the highest rate the
server sustains (achieved >= 98% of offered, the SLO met), with its repeat spread and goodput.

Issue 13: closed loops hide queueing; this scenario sends on a schedule, finds where the achieved
rate flattens and P95 passes the SLO, and records the latency-vs-load curve and the closed-loop
P95 at the same throughput. ``max_rate_rps:-10%`` gates it against a baseline.
"""

import pytest

from embedgate.perf import capacity


@pytest.mark.perf
def test_capacity_max_sustainable_rate_under_slo(benchmark, perf_session, perf_record,
                                                 perf_requests_export):
    figures = capacity.run(perf_session, benchmark, export_path=perf_requests_export,
                           record=perf_record)
    curve = figures["load_curve"]
    assert len(curve) >= 2 and all(p["requests_scheduled"] > 0 for p in curve)
    lowest = min(curve, key=lambda p: p["offered_rps"])
    assert figures["max_rate_rps_round_median"] > 0, (
        f"no offered rate met the SLO {figures['slo']}: at the lowest, "
        f"{lowest['offered_rps']:g} req/s, {'; '.join(lowest['failing'])}")
    assert figures["goodput_rps_round_median"] > 0
