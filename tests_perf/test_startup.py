"""Startup: launch to ready, and the first request after ready (cold).

The kit orders this test before every other one, so its request is the server's first.
"""

import pytest

from embedgate.perf.runner import missing_figures


@pytest.mark.perf
def test_startup_cold_first_request(benchmark, perf_cold_start):
    figures = perf_cold_start(benchmark)
    assert missing_figures(figures) == []
    assert figures["cold_first_request_ms"] > 0
    if figures["backend"] != "external":
        assert figures["startup_s"] > 0
