"""The benchmark tests as a user runs them (issue #11), with the server replaced by a fake that
answers every text with a random vector (a model that is not the profile's): every benchmark is
judged and fails, with a message naming the published figure and its source, or, where the data
is not in the mirror, the dataset id, revision and download command. Nothing is skipped.

The real-server version of this (the tiny Qwen3 on vLLM served as Qwen3-Embedding-0.6B) is in
tests/test_benchmarks_e2e.py.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mteb")

import shared_mirror  # noqa: E402
from embedgate.models.profiles import load_profile  # noqa: E402
from embedgate.quality.anchors import profile_anchors  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAKE_SERVER = textwrap.dedent('''
    import hashlib, json
    import httpx, numpy as np, pytest
    from embedgate.serve.client import EmbeddingClient
    from embedgate.serve.lifecycle import ServerInfo

    def vector(text):
        seed = int(hashlib.sha256(json.dumps(text).encode()).hexdigest()[:8], 16)
        v = np.random.default_rng(seed).normal(size=16)
        return list(v / np.linalg.norm(v))

    def answer(request):
        body = json.loads(request.content)
        return httpx.Response(200, json={"data": [{"index": i, "embedding": vector(t)}
                                                  for i, t in enumerate(body["input"])]})

    @pytest.fixture(scope="session")
    def embedding_server(pytestconfig):
        from embedgate.session import get_run
        # not "external": no liveness probe of a URL that only the mock transport answers
        info = ServerInfo(backend="fake", base_url="http://fake", served_name="fake",
                          model="fake")
        get_run(pytestconfig).server = info
        return info

    @pytest.fixture(scope="session")
    def quality_encoder(pytestconfig, embedding_server, embedgate_settings, model_profile):
        from embedgate.plugin.benchmarks import limit_aware_encoder
        client = EmbeddingClient("http://fake", "fake", encoding_format="float",
                                 transport=httpx.MockTransport(answer))
        return limit_aware_encoder(pytestconfig, client, embedding_server, model_profile,
                                   embedgate_settings)
''')


@pytest.fixture(scope="module")
def mirror_dir(tmp_path_factory):
    if not shared_mirror.SHARED.is_dir():
        pytest.skip(f"real data not present at {shared_mirror.SHARED}")
    return shared_mirror.build(tmp_path_factory.mktemp("mirror"),
                               ("ATEC", "AFQMC", "PAWSX", "XNLI"))


@pytest.fixture
def suite(pytester, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytester.makeconftest(FAKE_SERVER)
    for name in ("test_quality.py", "test_mteb_published.py"):
        (pytester.path / name).write_text((ROOT / "tests_quality" / name).read_text())
    return pytester


def test_benchmark_plugin_profile_benchmarks_all_judged_and_failed(suite, mirror_dir):
    result = suite.runpytest("-p", "no:cacheprovider", "-m", "mteb",
                             "--embedgate-profile", "qwen3-embedding-0.6b",
                             "--embedgate-benchmark-mirror", str(mirror_dir),
                             "--embedgate-bootstrap-resamples", "100")
    out = result.stdout.str()
    outcomes = result.parseoutcomes()
    anchors = profile_anchors(load_profile("qwen3-embedding-0.6b"))
    report = json.loads((suite.path / "reports" / "quality.json").read_text())["datasets"]
    not_run = out.count("benchmarks: published ")
    assert not_run == 2 and "Cmnli/validation/default not run" in out  # main score max_accuracy
    runnable = len(anchors) - not_run
    assert outcomes["failed"] == 2 * runnable, out[-3000:]  # the bar and the reproduction
    assert "passed" not in outcomes and "skipped" not in outcomes and "error" not in outcomes
    assert "test_benchmark_reproduces_published[XNLI/validation/en]" in out
    # judged on data: the published figure and its source name the bar and the verdict
    assert ("AFQMC/validation/default: spearman" in out and "is below the threshold 0.422271 "
            "(published 0.432271 - tolerance 0.01; MTEB published 0.432271 for "
            "Qwen/Qwen3-Embedding-0.6B (embeddings-benchmark/results@f4cc6c8b365a results/"
            "Qwen__Qwen3-Embedding-0.6B/b22da495047858cce924d27d76261e96be6febc0/AFQMC.json, "
            "mteb 1.38.9)") in out
    assert "XNLI/validation/zh does not reproduce MTEB's published score" in out
    assert "expected: 0.873291 +- 0.01 (MTEB published 0.873291" in out
    # not in the mirror: the id, the revision and the command, never a skip
    assert "dataset C-MTEB/BQ at revision e3dda5e115e487b39ec7e618c0c6a29137052a55 (pinned by " \
           "mteb) was not found" in out and "embedgate benchmarks download DIR BQ" in out
    assert "has no subset 'bg'" in out and "has no split 'test'" in out
    judged = {k: v for k, v in report.items() if "published" in v}
    assert judged["AFQMC/validation/default"]["published"]["reproduced"] is False
    assert judged["AFQMC/validation/default"]["benchmark"]["data_from"] == "mirror"
    assert len(judged) == 12  # AFQMC, PAWSX, XNLI validation in the 10 mirrored languages


def test_benchmark_plugin_bad_selection_is_a_usage_error(suite):
    result = suite.runpytest("-p", "no:cacheprovider", "--embedgate-benchmark",
                             "XNLI:validation:xx")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "'xx' is neither a subset" in result.stderr.str()
    result = suite.runpytest("-p", "no:cacheprovider", "--embedgate-benchmark", "A:b:c:d")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--embedgate-benchmark: 'A:b:c:d' (from --embedgate-benchmark) benchmark" in \
        result.stderr.str()


def test_benchmark_plugin_no_mirror_no_benchmarks(suite):
    result = suite.runpytest("-p", "no:cacheprovider", "--collect-only", "-q", "-m", "mteb")
    assert "no tests collected" in result.stdout.str() or "deselected" in result.stdout.str()
    assert "test_benchmark_reproduces_published" not in result.stdout.str()


def test_benchmark_plugin_nothing_asked_leaves_the_reproduction_test_out_not_skipped(suite):
    """`pytest -m quality` with no benchmark asked: the reproduction test is deselected, never an
    'empty parameter set' skip beside the judged datasets."""
    result = suite.runpytest("-p", "no:cacheprovider", "--collect-only", "-q", "-m", "quality")
    out = result.stdout.str()
    assert "test_quality_meets_threshold[sts_en]" in out
    assert "test_benchmark_reproduces_published" not in out
    assert "1 deselected" in out, out


def test_benchmark_plugin_selection_from_env_and_config(suite, monkeypatch):
    """The option's env twin and [tool.embedgate] key name benchmarks too; test ids are
    TASK/split/subset and carry the mteb marker."""
    suite.makepyprojecttoml('[tool.embedgate]\nbenchmarks = ["XNLI:validation:en,zh"]\n')
    result = suite.runpytest("-p", "no:cacheprovider", "--collect-only", "-q", "-m", "mteb")
    out = result.stdout.str()
    assert "test_quality.py::test_quality_meets_threshold[XNLI/validation/en]" in out
    assert "test_mteb_published.py::test_benchmark_reproduces_published[XNLI/validation/zh]" in out
    assert "sts_en" not in out
    monkeypatch.setenv("EMBEDGATE_BENCHMARKS", "AFQMC;ATEC:validation")
    out = suite.runpytest("-p", "no:cacheprovider", "--collect-only", "-q", "-m",
                          "mteb").stdout.str()
    assert "[AFQMC/validation/default]" in out and "[ATEC/validation/default]" in out
    assert "XNLI" not in out  # the environment wins over the config file
