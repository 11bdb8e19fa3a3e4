"""The load generator is not the bottleneck: its own cost per request against a trivial server.

Issue 5: measure the client's cost per request and report it; it must sustain at least 2,000
requests/s on one core (the client thread is pinned to one CPU, the server to another).
"""

import pytest

from embedgate.perf import overhead
from embedgate.perf.scenarios import CLIENT_MIN_RPS, OVERHEAD_CONCURRENCY
from embedgate.perf.runner import missing_figures


@pytest.mark.perf
@pytest.mark.parametrize("concurrency", OVERHEAD_CONCURRENCY)
def test_client_overhead_sustains_2000_rps_on_one_core(benchmark, perf_record, model_profile,
                                                         concurrency):
    figures = overhead.run_scenario(benchmark, dim=model_profile.embedding_dim,
                                    concurrency=concurrency, record=perf_record)
    assert missing_figures(figures) == []
    assert figures["client_achieved_rps"] >= CLIENT_MIN_RPS
    assert figures["client_max_rps_one_core"] >= CLIENT_MIN_RPS
