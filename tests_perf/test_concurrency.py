"""Concurrency sweep: 1, 4, 16 and 64 requests in flight, a fixed request count per round.

Issue 5: requests/s and tokens/s per level, with the latency percentiles that the load costs.
"""

import pytest

from embedgate.perf.runner import missing_figures
from embedgate.perf.scenarios import CONCURRENCY


@pytest.mark.perf
@pytest.mark.parametrize("scenario", CONCURRENCY, ids=lambda s: s.id.split("/")[1])
def test_concurrency_sweep(benchmark, perf_session, scenario):
    figures = perf_session.run(benchmark, scenario)
    assert missing_figures(figures) == []
    assert figures["throughput_rps"] > 0 and figures["tokens_per_s"] > 0
