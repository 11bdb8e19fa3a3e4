"""The quality suite fails closed (issue 17, item 2): whole pytest sessions of the user-facing
suite, with a hashing encoder standing in for the server so no model is needed.

A dataset with neither a bar nor a published anchor fails the session as unjudged unless the run
is record-only; a dataset whose evaluation errors is listed in quality.json as errored (so
`embedgate compare` fails on it); a not-applicable dataset is skipped with its reason.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[1] / "tests_quality" / "test_quality.py"

CONFTEST = textwrap.dedent('''
    import hashlib
    import numpy as np
    import pytest
    from embedgate.quality.scoring import CachingEncoder

    def embed(texts):
        if any("BOOM" in t for t in texts):
            raise RuntimeError("the server answered 500")
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1
        return out + 1e-3

    @pytest.fixture(scope="session")
    def quality_encoder():
        return CachingEncoder(embed)
''')


@pytest.fixture
def session(pytester, monkeypatch):
    for key in ("EMBEDGATE_RECORD_ONLY", "EMBEDGATE_DATASETS", "EMBEDGATE_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    pytester.makeconftest(CONFTEST)
    # the suite itself, beside the conftest whose encoder replaces the server
    (pytester.path / "test_quality.py").write_text(SUITE.read_text())
    rows = ["sentence1\tsentence2\tscore"]
    rows += [f"the cat sat on mat {i}\tthe cat sat on mat {i}\t5" for i in range(20)]
    rows += [f"stocks fell {i} points\tthe dog barks loudly {i}\t0" for i in range(20)]
    (pytester.path / "mine.tsv").write_text("\n".join(rows) + "\n")
    (pytester.path / "boom.tsv").write_text("sentence1\tsentence2\tscore\nBOOM a\tb\t1\nc\td\t0\n")
    return pytester


def _run(session, *args):
    return session.runpytest("test_quality.py", "-m", "quality", "-rs", "-p", "no:cacheprovider",
                             "--embedgate-reports-dir", str(session.path / "reports"), *args)


def test_dataset_without_bar_or_anchor_is_unjudged_and_fails_the_session(session):
    result = _run(session, "-k", "mine", "--embedgate-dataset", "name=mine task=sts path=mine.tsv")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "mine: spearman" in out and "is unjudged: no bar and no published anchor" in out
    assert ("FAIL: 1 dataset(s) unjudged (no bar, no published anchor; the session fails unless "
            "--embedgate-record-only): mine") in out
    entry = json.loads((session.path / "reports" / "quality.json").read_text())["datasets"]["mine"]
    assert entry["status"] == "unjudged" and entry["passed"] is False
    assert entry["null"]["p99"] > 0.2 and entry["null"]["n"] == 40


def test_record_only_scores_an_unjudged_dataset_without_failing(session):
    result = _run(session, "-k", "mine", "--embedgate-record-only",
                  "--embedgate-dataset", "name=mine task=sts path=mine.tsv")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(skipped=1)
    out = result.stdout.str()
    assert "record-only: 1 dataset(s) scored without a verdict: mine" in out
    entry = json.loads((session.path / "reports" / "quality.json").read_text())["datasets"]["mine"]
    assert entry["status"] == "recorded" and entry["score"] > 0.8


def test_a_bar_at_or_below_the_null_is_a_profile_error(session):
    result = _run(session, "-k", "mine", "--embedgate-dataset",
                  "name=mine task=sts path=mine.tsv threshold=0.1")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "profile error: the bar 0.1 (dataset entry) is at or below the random-encoder null" in out
    assert "FAIL: 1 dataset(s) with a bar at or below the random-encoder null (profile error)" in out


def test_an_errored_dataset_is_listed_in_the_report(session):
    result = _run(session, "-k", "boom", "--embedgate-dataset",
                  "name=boom task=sts path=boom.tsv threshold=0.5")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "FAIL: 1 dataset(s) errored: boom" in result.stdout.str()
    entry = json.loads((session.path / "reports" / "quality.json").read_text())["datasets"]["boom"]
    assert entry["status"] == "error" and "the server answered 500" in entry["error"]


def test_not_applicable_dataset_is_skipped_saying_why(session):
    result = _run(session, "-k", "atec_zh")
    result.assert_outcomes(skipped=1)
    out = result.stdout.str()
    assert "not applicable: English-only model: Chinese STS" in out
    assert "not applicable to this profile: atec_zh" in out
