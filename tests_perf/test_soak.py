"""Soak: a fixed count of requests (4,000 by default, capped at 120 s) under sustained load.

The server's memory, read every 100 requests, must not grow: the 95% CI of its slope (bytes per
1,000 requests, after a warm-up quarter) must lie below --embedgate-perf-soak-max-growth
(1 MiB by default), and no request may fail. This is the leak that shows only after many
requests; tests/test_perf_soak.py shows the scenario fails against a server that leaks.
"""

import pytest

from embedgate.perf.soak import SoakPlan


@pytest.mark.perf
def test_soak_memory_stays_flat_and_no_request_fails(benchmark, perf_session):
    options = perf_session.options
    plan = SoakPlan(requests=options.perf_soak_requests,
                    max_growth_per_1k=options.perf_soak_max_growth)
    figures = perf_session.run_soak(benchmark, plan)
    assert figures["soak_errors"] == 0, "\n".join(figures["soak_failures"])
    if perf_session.server.backend == "external":
        pytest.skip(f"memory growth not judged: {figures['memory_slope_null_reason']}")
    assert figures["soak_passed"], "\n".join(figures["soak_failures"])
