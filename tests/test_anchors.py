"""Published MTEB scores as anchors (issue #11): each seed profile carries its model's published
main scores with their source, the bar is published minus the stated tolerance, and a served
score outside published +- tolerance does not reproduce it, above as much as below."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import shared_mirror
from embedgate.models.profiles import load_profile
from embedgate.quality.anchors import (Anchor, AnchorError, profile_anchors, published_table,
                                       read_results, reproduction_message)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PUBLISHED = shared_mirror.SHARED.parent / "published" / "mteb-results.json"
SEEDS = {"all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
         "all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2",
         "qwen3-embedding-0.6b": "Qwen/Qwen3-Embedding-0.6B",
         "qwen3-embedding-4b": "Qwen/Qwen3-Embedding-4B",
         "qwen3-embedding-8b": "Qwen/Qwen3-Embedding-8B",
         "bge-m3": "BAAI/bge-m3", "bge-large-zh-v1.5": "BAAI/bge-large-zh-v1.5",
         "mxbai-embed-large-v1": "mixedbread-ai/mxbai-embed-large-v1"}


def anchor(score=0.12244, tolerance=0.005) -> Anchor:
    return Anchor("ATEC/validation/default", score, tolerance, "embeddings-benchmark/results",
                  "f4cc6c8b365a3c779dbc708d6affe0b0355b2ddf", "results/x/ATEC.json", "1.12.75",
                  "sentence-transformers/all-MiniLM-L6-v2", "8b3219a9", "all-minilm-l6-v2")


@pytest.mark.parametrize("profile_name", sorted(SEEDS))
def test_anchors_every_seed_profile_has_its_published_scores(profile_name):
    anchors = profile_anchors(load_profile(profile_name))
    assert len(anchors) >= 8
    for key, a in anchors.items():
        assert a.repository == "embeddings-benchmark/results" and len(a.commit) == 40
        assert a.model == SEEDS[profile_name] and a.file.endswith(f"/{key.split('/')[0]}.json")
        assert 0 < a.tolerance <= 0.02 and a.bar == pytest.approx(a.score - a.tolerance)


@pytest.mark.skipif(not PUBLISHED.is_file(), reason=f"{PUBLISHED} not present")
@pytest.mark.parametrize("profile_name", sorted(SEEDS))
def test_anchors_profiles_copy_the_published_file_exactly(profile_name):
    """Facts copied with their source: every finite published figure, its file, its mteb
    version and the results repository's commit, nothing else."""
    results = read_results(PUBLISHED)
    published = results["models"][SEEDS[profile_name]]
    expected = {f"{t}/{sp}/{su}": e for t, splits in published.items()
                for sp, subsets in splits.items() for su, e in subsets.items()
                if math.isfinite(e["main_score"])}
    anchors = profile_anchors(load_profile(profile_name))
    assert set(anchors) == set(expected)
    for key, a in anchors.items():
        assert a.score == expected[key]["main_score"], key
        assert a.file == expected[key]["file"] and a.mteb_version == expected[key]["mteb_version"]
        assert a.model_revision == expected[key]["model_revision"]
        assert a.commit == results["source"]["commit"]


def test_anchors_tiny_model_has_none():
    assert profile_anchors(load_profile("tiny-qwen3")) == {}


def test_anchors_reproduction_is_two_sided():
    a = anchor()
    assert a.bar == pytest.approx(0.11744)
    assert a.check(0.122434)["reproduced"] is True
    assert a.check(0.1174)["reproduced"] is False  # below: also under the bar
    high = a.check(0.1300)
    assert high["reproduced"] is False and high["difference"] == pytest.approx(0.00756)
    assert a.check(float("nan"))["reproduced"] is False


def test_anchors_message_names_the_figure_its_source_and_the_side():
    @dataclass
    class CI:
        low: float = 0.28
        high: float = 0.32
    message = reproduction_message("ATEC/validation/default", "spearman", 0.30, CI(), 20000,
                                   anchor(), "the data differs")
    for part in ("got:      spearman 0.30000 (95% CI 0.2800-0.3200, n=20000)",
                 "expected: 0.12244 +- 0.005 (MTEB published 0.12244 for "
                 "sentence-transformers/all-MiniLM-L6-v2 (embeddings-benchmark/results@"
                 "f4cc6c8b365a results/x/ATEC.json, mteb 1.12.75)",
                 "difference: +0.17756, above MTEB's", "note: the data differs"):
        assert part in message, part


@dataclass
class FakeProfile:
    published: dict
    name: str = "p"
    path: Path = Path("p.toml")
    thresholds: dict = field(default_factory=dict)


def test_anchors_table_from_results_round_trips():
    results = {"source": {"repository": "embeddings-benchmark/results", "commit": "c" * 40},
               "models": {"org/m": {
                   "ATEC": {"validation": {"default": {"main_score": 0.5, "mteb_version": "1.1",
                                                       "model_revision": "r",
                                                       "file": "results/org__m/r/ATEC.json"}},
                            "test": {"default": {"main_score": float("nan"), "mteb_version": "1.1",
                                                 "model_revision": "r",
                                                 "file": "results/org__m/r/ATEC.json"}}}}}}
    text = published_table(results, "org/m", tolerance=0.01, tolerance_note="why")
    assert "# ATEC/test/default: published value nan is not a number; no anchor" in text
    table = tomllib.loads(text)["published"]
    anchors = profile_anchors(FakeProfile(table))
    assert list(anchors) == ["ATEC/validation/default"]
    got = anchors["ATEC/validation/default"]
    assert (got.score, got.file, got.model_revision) == (0.5, "results/org__m/r/ATEC.json", "r")
    with pytest.raises(AnchorError, match="no published scores for 'org/other'"):
        published_table(results, "org/other", tolerance=0.01)


@pytest.mark.parametrize("table, message", [
    ({"repository": "r", "commit": "c", "model": "m", "scores": {}}, "lacks \\['tolerance'\\]"),
    ({"repository": "r", "commit": "c", "model": "m", "tolerance": 2, "scores": {}},
     "tolerance 2 must be"),
    ({"repository": "r", "commit": "c", "model": "m", "tolerance": 0.01,
      "scores": {"ATEC": {"score": 0.1, "file": "f", "mteb_version": "1"}}}, "TASK/split/subset"),
    ({"repository": "r", "commit": "c", "model": "m", "tolerance": 0.01,
      "scores": {"A/b/c": {"score": "high", "file": "f", "mteb_version": "1"}}}, "not a number"),
])
def test_anchors_malformed_table_is_refused(table, message):
    with pytest.raises(AnchorError, match=message):
        profile_anchors(FakeProfile(table))
