"""MTEB benchmarks: the served score must reproduce the model's published MTEB score, within the
tolerance its profile states. A score well above MTEB's is a finding too (other data, instruction
or pooling). The bar (published minus tolerance) is test_quality_meets_threshold's; both read the
same result. One test per benchmark split and subset that the profile has a published score for.
"""

import pytest

from embedgate.quality.anchors import reproduction_message


@pytest.mark.quality
def test_benchmark_reproduces_published(quality_benchmark, quality_evaluator):
    result = quality_evaluator(quality_benchmark)
    verdict = result.details["published"]
    check = result.details["benchmark"]["data_check"]
    assert verdict["reproduced"], reproduction_message(
        result.name, result.main_metric, result.score, result.ci, result.n,
        quality_benchmark.anchor,
        "the data differs from mteb's description: " + "; ".join(check) if check else "")
