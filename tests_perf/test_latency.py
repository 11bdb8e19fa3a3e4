"""Single-request latency for short (~16 tokens), medium (~128) and long (~model max) inputs.

Issue 5: P50/P90/P95/P99 and max from per-request timings, and peak memory, for every scenario.
"""

import pytest

from embedgate.perf.runner import missing_figures
from embedgate.perf.scenarios import LATENCY


@pytest.mark.perf
@pytest.mark.parametrize("scenario", LATENCY, ids=lambda s: s.id.split("/")[1])
def test_latency_single_request_by_input_length(benchmark, perf_session, scenario):
    figures = perf_session.run(benchmark, scenario)
    assert missing_figures(figures) == []
