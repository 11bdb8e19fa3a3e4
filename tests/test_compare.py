"""`embedgate compare`: verdicts, exit codes and reports on synthetic runs with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedgate.cli import main
from embedgate.verdict.compare import CompareInputError, compare, load_run
from embedgate.quality.results_json import SCHEMA

RNG = np.random.default_rng(7)
GOLD = RNG.uniform(0, 5, 400)


def _pair_entry(sims, sha="a" * 64, kind="sts"):
    from embedgate.quality.metrics import average_precision, spearman
    gold = GOLD if kind == "sts" else (GOLD > 2.5).astype(int)
    score = spearman(sims, gold) if kind == "sts" else average_precision(sims, gold)
    return {"task": kind, "main_metric": "spearman" if kind == "sts" else "ap", "score": score,
            "metrics": {}, "ci": {"low": score - 0.05, "high": score + 0.05}, "n": len(sims),
            "threshold": None, "passed": None,
            "dataset": {"source": "x.tsv", "sha256": sha},
            "items": {"ids": [str(i) for i in range(len(sims))],
                      "similarity": [float(s) for s in sims], "gold": [float(g) for g in gold]}}


def _retrieval_entry(ndcg):
    return {"task": "retrieval", "main_metric": "ndcg_at_10", "score": float(np.mean(ndcg)),
            "metrics": {}, "ci": None, "n": len(ndcg),
            "dataset": {"source": "beir", "sha256": "b" * 64},
            "items": {"ids": [f"q{i}" for i in range(len(ndcg))],
                      "ndcg_at_10": [float(v) for v in ndcg]}}


def _write_run(path: Path, datasets: dict, profile="m", perf=None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "quality.json").write_text(json.dumps({
        "schema": SCHEMA, "profile": profile, "model": f"/models/{profile}", "backend": "vllm",
        "server_version": "x", "dimension": 384, "max_tokens": 256, "datasets": datasets}))
    if perf is not None:
        (path / "perf.json").write_text(json.dumps(perf))
    return path


def _perf(p95: float, rounds=5, peak=2**30):
    return {"machine_info": {"node": "ci"}, "benchmarks": [{"name": "test_latency[short]",
            "extra_info": {"scenario": "latency_short", "rounds": rounds,
                           "latency_p50_ms_round_median": p95 / 2,
                           "latency_p95_ms_round_median": p95,
                           "throughput_rps_round_median": 100.0,
                           "peak_memory_bytes": peak, "peak_memory_source": "pss",
                           "latencies_ms_by_round": [[p95 / 2, p95]] * rounds,
                           "memory_timeline": {"t_s": [0, 1, 2],
                                               "rss_bytes": [peak / 2, peak, peak / 2]}}}]}


@pytest.fixture
def good_sims():
    return GOLD + RNG.normal(0, 1.0, GOLD.size)


def test_compare_same_run_passes(tmp_path, good_sims):
    run = _write_run(tmp_path / "a", {"sts": _pair_entry(good_sims)}, perf=_perf(20))
    cmp = compare(run, run)
    assert cmp.passed and cmp.datasets[0].delta == 0 and cmp.perf.ok


def test_compare_degraded_candidate_fails_with_dataset_and_size(tmp_path, good_sims):
    base = _write_run(tmp_path / "base", {"sts": _pair_entry(good_sims)}, "base")
    worse = good_sims + RNG.normal(0, 3.0, GOLD.size)
    cand = _write_run(tmp_path / "cand", {"sts": _pair_entry(worse)}, "cand")
    cmp = compare(base, cand)
    (d,) = cmp.datasets
    assert not cmp.passed and d.status == "worse" and d.delta < -0.1
    assert d.delta_ci.high < 0 and d.p_worse_holm < 0.025
    assert "sts: spearman" in d.reason() and f"delta {d.delta:+.4f}" in d.reason()


def test_compare_small_noise_within_margin_passes(tmp_path, good_sims):
    base = _write_run(tmp_path / "base", {"sts": _pair_entry(good_sims)})
    cand = _write_run(tmp_path / "cand", {"sts": _pair_entry(good_sims + 1e-4)})
    assert compare(base, cand).passed


def test_compare_margin_per_dataset_changes_the_verdict(tmp_path):
    base_ndcg = RNG.uniform(0.3, 1, 200)
    cand_ndcg = base_ndcg - 0.02
    base = _write_run(tmp_path / "base", {"r": _retrieval_entry(base_ndcg)})
    cand = _write_run(tmp_path / "cand", {"r": _retrieval_entry(cand_ndcg)})
    assert not compare(base, cand).passed
    assert compare(base, cand, margins={"r": 0.05}).passed


def test_compare_pair_classification_uses_ap(tmp_path, good_sims):
    base = _write_run(tmp_path / "b", {"p": _pair_entry(good_sims, kind="pair_classification")})
    cand = _write_run(tmp_path / "c", {"p": _pair_entry(-good_sims, kind="pair_classification")})
    (d,) = compare(base, cand).datasets
    assert d.metric == "ap" and d.status == "worse" and d.delta < -0.3


def test_compare_candidate_missing_a_dataset_fails(tmp_path, good_sims):
    """Fail closed: a dataset the candidate lacks is not a pass; a new one is only listed."""
    base = _write_run(tmp_path / "b", {"sts": _pair_entry(good_sims), "old": _pair_entry(good_sims)})
    cand = _write_run(tmp_path / "c", {"sts": _pair_entry(good_sims), "new": _pair_entry(good_sims)})
    cmp = compare(base, cand)
    assert {d.name: d.status for d in cmp.datasets} == {"sts": "pass", "old": "missing",
                                                        "new": "only_candidate"}
    assert not cmp.passed
    assert cmp.failing_rules() == ["old: the candidate run lacks it; not compared, which fails "
                                   "the comparison"]
    assert main(["compare", str(base), str(cand), "--out", str(tmp_path / "o")]) == 1


def test_compare_errored_dataset_fails(tmp_path, good_sims):
    """A dataset whose test errored (listed in quality.json with status error) fails compare."""
    base = _write_run(tmp_path / "b", {"sts": _pair_entry(good_sims)})
    errored = {"task": "sts", "main_metric": "spearman", "score": None, "status": "error",
               "error": "HTTPError: 500", "items": None}
    cand = _write_run(tmp_path / "c", {"sts": errored})
    cmp = compare(base, cand)
    (d,) = cmp.datasets
    assert d.status == "errored" and not cmp.passed
    assert "errored in the candidate run (HTTPError: 500)" in d.reason()


def test_compare_different_dataset_hash_is_unusable_input(tmp_path, good_sims):
    base = _write_run(tmp_path / "b", {"sts": _pair_entry(good_sims)})
    cand = _write_run(tmp_path / "c", {"sts": _pair_entry(good_sims, sha="c" * 64)})
    with pytest.raises(CompareInputError, match="different content"):
        compare(base, cand)
    assert main(["compare", str(base), str(cand)]) == 2


def test_compare_missing_or_foreign_input_exits_2(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope"), str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), str(tmp_path / "empty")]) == 2
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "quality.json").write_text('{"schema": "other/9"}')
    with pytest.raises(CompareInputError, match="schema"):
        load_run(tmp_path / "old")


def test_compare_perf_regression_fails_the_verdict(tmp_path, good_sims):
    base = _write_run(tmp_path / "b", {"sts": _pair_entry(good_sims)}, perf=_perf(20))
    cand = _write_run(tmp_path / "c", {"sts": _pair_entry(good_sims)}, perf=_perf(30))
    cmp = compare(base, cand)
    assert not cmp.passed and cmp.perf.failures
    assert any("latency_short" in line and "p95_ms" in line for line in cmp.failing_rules())
    assert compare(base, cand, perf_rules=["p95_ms:+60%"]).passed


def test_compare_cli_writes_markdown_and_html_and_exit_codes(tmp_path, good_sims, capsys):
    base = _write_run(tmp_path / "b", {"sts": _pair_entry(good_sims)}, "base", perf=_perf(20))
    cand = _write_run(tmp_path / "c", {"sts": _pair_entry(good_sims - RNG.normal(0, 3, GOLD.size))},
                      "cand", perf=_perf(20))
    assert main(["compare", str(base), str(base), "--out", str(tmp_path / "same")]) == 0
    assert main(["compare", str(base), str(cand), "--out", str(tmp_path / "out")]) == 1
    md = (tmp_path / "out" / "compare.md").read_text()
    assert md.startswith("## embedgate: FAIL, `cand` may not replace `base`")
    assert md.index("### Failing rules") < md.index("### Models")
    assert "| sts | spearman |" in md and "| latency_short |" in md
    html = (tmp_path / "out" / "compare.html").read_text()
    assert html.count("src='data:image/png;base64,") == 4 and "http" not in html.lower()
    assert "<h2>Forest plot</h2>" in html and "Holm" in html
    assert "FAIL" in capsys.readouterr().out


def test_compare_models_mode_lays_runs_side_by_side(tmp_path, good_sims, capsys):
    runs = [_write_run(tmp_path / n, {"sts": _pair_entry(good_sims)}, n) for n in "abc"]
    assert main(["compare", "--models", *map(str, runs), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "3 runs side by side" in out and "| dataset | metric | a | b | c |" in out


def test_compare_reports_never_contain_api_keys(tmp_path, good_sims, monkeypatch):
    monkeypatch.setenv("EMBEDGATE_API_KEY", "sk-secret-123")
    run = _write_run(tmp_path / "a", {"sts": _pair_entry(good_sims)})
    main(["compare", str(run), str(run), "--out", str(tmp_path / "o")])
    for f in (tmp_path / "o").iterdir():
        assert "sk-secret-123" not in f.read_text()


# -- worse / not shown / pass, power and error control (issue 17) ---------------------------------
def _sts_entry(sims, gold):
    from embedgate.quality.metrics import spearman
    return {"task": "sts", "main_metric": "spearman", "score": spearman(sims, gold),
            "ci": None, "n": len(sims), "dataset": {"source": "x.tsv", "sha256": "d" * 64},
            "items": {"ids": [str(i) for i in range(len(sims))],
                      "similarity": [float(v) for v in sims], "gold": [float(g) for g in gold]}}


def _small_sts(n, noise, seed):
    """A baseline and a candidate that is the baseline plus noise, on n graded pairs."""
    rng = np.random.default_rng(seed)
    gold = rng.uniform(0, 5, n)
    base = gold + rng.normal(0, 1.5, n)
    return _sts_entry(base, gold), _sts_entry(base + rng.normal(0, noise, n), gold)


def test_compare_noise_at_small_n_is_not_shown_never_worse(tmp_path):
    """24 pairs and a candidate that only adds noise: the CI straddles -margin, so the verdict
    is "not shown" (with its MDE), never "worse"."""
    b, c = _small_sts(24, 0.8, seed=2)
    base = _write_run(tmp_path / "b", {"sts_small": b})
    cand = _write_run(tmp_path / "c", {"sts_small": c})
    cmp = compare(base, cand)
    (d,) = cmp.datasets
    assert d.status == "not_shown" and d.delta_ci.low < -0.01 < d.delta_ci.high
    assert d.mde > 0.1 and d.p_worse_holm > 0.025
    assert not cmp.passed  # default policy: not shown fails
    assert "not shown: the CI straddles -0.01" in d.reason() and f"{d.mde:.3f}" in d.reason()
    assert compare(base, cand, not_shown="pass").passed
    assert main(["compare", str(base), str(cand), "--out", str(tmp_path / "o")]) == 1
    assert main(["compare", str(base), str(cand), "--not-shown", "pass",
                 "--out", str(tmp_path / "o2")]) == 0
    md = (tmp_path / "o2" / "compare.md").read_text()
    assert "Policy: 'not shown' passes the comparison (--not-shown pass)" in md
    assert "| NOT SHOWN |" in md and "MDE (80% power)" in md


def test_compare_mde_shrinks_with_n(tmp_path):
    mdes = []
    for n in (24, 96, 384):
        b, c = _small_sts(n, 0.8, seed=3)
        run_b = _write_run(tmp_path / f"b{n}", {"s": b})
        run_c = _write_run(tmp_path / f"c{n}", {"s": c})
        mdes.append(compare(run_b, run_c).datasets[0].mde)
    assert mdes[0] > mdes[1] > mdes[2] > 0.01


def test_holm_step_down_matches_the_textbook_example():
    # p = (0.01, 0.04, 0.03, 0.005), m = 4: sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1
    assert compare_holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def compare_holm(p):
    from embedgate.verdict.compare import holm
    return holm(p)


def test_compare_holm_keeps_a_borderline_regression_from_being_called_worse(tmp_path):
    """The same borderline dataset is "worse" alone and "not shown" among many null datasets."""
    from embedgate.verdict.compare import ALPHA
    base_ndcg = RNG.uniform(0.3, 1, 150)
    drop = base_ndcg - 0.035 + RNG.normal(0, 0.07, 150)
    alone_b = _write_run(tmp_path / "ab", {"r": _retrieval_entry(base_ndcg)})
    alone_c = _write_run(tmp_path / "ac", {"r": _retrieval_entry(drop)})
    (alone,) = compare(alone_b, alone_c).datasets
    many_b = {"r": _retrieval_entry(base_ndcg)}
    many_c = {"r": _retrieval_entry(drop)}
    for k in range(9):
        same = RNG.uniform(0.3, 1, 150)
        many_b[f"z{k}"], many_c[f"z{k}"] = _retrieval_entry(same), _retrieval_entry(same)
    many = {d.name: d for d in compare(_write_run(tmp_path / "mb", many_b),
                                       _write_run(tmp_path / "mc", many_c)).datasets}
    assert alone.p_worse < ALPHA / 2 and alone.status == "worse"
    assert many["r"].p_worse == alone.p_worse
    assert many["r"].p_worse_holm > alone.p_worse_holm


def test_compare_same_run_passes_ten_times_in_a_row(tmp_path, good_sims):
    run = _write_run(tmp_path / "a", {"sts": _pair_entry(good_sims),
                                      "p": _pair_entry(good_sims, kind="pair_classification"),
                                      "r": _retrieval_entry(RNG.uniform(0, 1, 90))})
    for k in range(10):
        assert main(["compare", str(run), str(run), "--out", str(tmp_path / f"o{k}")]) == 0


def test_ci_coverage_simulation_small_version():
    """A small run of scripts/ci_coverage.py: the percentile CI compare uses covers near 95%."""
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "scripts" / "ci_coverage.py"
    spec = importlib.util.spec_from_file_location("ci_coverage", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    got = module.coverage("AP delta (pair classification)", 84, reps=60, resamples=400, seed=1)
    assert 0.85 <= got["percentile"] <= 1.0
    assert set(module.METHODS) == {"percentile", "basic", "BCa"}


def test_compare_lists_a_dataset_the_baseline_marks_not_applicable(tmp_path, good_sims):
    entry = {**_pair_entry(good_sims), "status": "not_applicable",
             "reason": "not applicable: English-only model"}
    base = _write_run(tmp_path / "b", {"zh": entry, "sts": _pair_entry(good_sims)})
    cand = _write_run(tmp_path / "c", {"zh": _pair_entry(-good_sims), "sts": _pair_entry(good_sims)})
    cmp = compare(base, cand)
    assert cmp.passed and cmp.datasets[0].status == "not_applicable"
    assert cmp.datasets[0].reason() == ("zh: baseline's profile: English-only model; "
                                        "not compared")
