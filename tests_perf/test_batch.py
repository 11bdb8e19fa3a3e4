"""Batch sizes 1, 8, 32 and 128 inputs per request (short inputs), one request in flight.

Issue 5: latency percentiles per request, inputs/s and tokens/s, and peak memory per batch size.
"""

import pytest

from embedgate.perf.runner import missing_figures
from embedgate.perf.scenarios import BATCH


@pytest.mark.perf
@pytest.mark.parametrize("scenario", BATCH, ids=lambda s: s.id.split("/")[1])
def test_batch_size_sweep(benchmark, perf_session, scenario):
    figures = perf_session.run(benchmark, scenario)
    assert missing_figures(figures) == []
    assert figures["inputs_timed"] == figures["requests_timed"] * scenario.batch
