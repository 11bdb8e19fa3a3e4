"""`embedgate calibrate` (issue #11): bars for a new model from one run, each above what a
random encoder reaches on the same items; a dataset the model does not beat a random encoder on
gets no bar, only a comment that says so."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedgate.cli import main as cli_main
from embedgate.models.profiles import load_profile, profile_dirs
from embedgate.quality.calibrate import calibrate, null_floor, replace_thresholds
from embedgate.quality.metrics import max_average_precision, spearman
from embedgate.quality.results_json import SCHEMA


def pair_entry(kind: str, sims, gold, **extra) -> dict:
    score = (spearman if kind == "sts" else max_average_precision)(sims, gold)
    return {"task": kind, "main_metric": "spearman" if kind == "sts" else "max_ap",
            "score": score, "ci": {"low": score - 0.05, "high": score + 0.05}, "n": len(gold),
            "items": {"ids": [str(i) for i in range(len(gold))], "similarity": list(sims),
                      "gold": list(gold), **extra}}


def document(rng) -> dict:
    gold = rng.uniform(0, 5, 400)
    labels = rng.integers(0, 2, 400).astype(float)
    queries, corpus = 200, 100
    ndcg = rng.uniform(0.4, 0.9, queries)
    return {"schema": SCHEMA, "created": "2026-12-01T00:00:00Z", "model": "m", "backend": "vllm",
            "served_name": "m", "server_version": "vllm 0.32.0", "datasets": {
                "good_sts": pair_entry("sts", gold + rng.normal(0, 1, 400), gold),
                "random_pairs": pair_entry("pair_classification", rng.normal(size=400), labels,
                                           dot=list(rng.normal(size=400))),
                "XNLI/validation/en": pair_entry("pair_classification",
                                                 labels + rng.normal(0, 0.8, 400), labels),
                "code": {"task": "retrieval", "main_metric": "ndcg_at_10",
                         "score": float(ndcg.mean()), "ci": {"low": 0.6, "high": 0.7},
                         "n": queries, "dataset": {"corpus": corpus},
                         "items": {"ids": [f"q{i}" for i in range(queries)],
                                   "ndcg_at_10": list(ndcg), "n_relevant": [1] * queries}}}}


def test_calibrate_bars_beat_a_random_encoder():
    bars = {b.name: b for b in calibrate(document(np.random.default_rng(0)), draws=300)}
    good = bars["good_sts"]
    assert good.bar == pytest.approx(np.floor((good.score - 0.05) * 100) / 100)
    assert good.null < 0.15 < good.bar  # Spearman of 400 shuffled pairs: ~2.3/sqrt(400)
    assert bars["random_pairs"].bar is None
    assert "does not beat a random encoder" in bars["random_pairs"].why
    assert bars["XNLI/validation/en"].bar is not None
    code = bars["code"]
    expected_null_mean = sum(1 / np.log2(k + 1) for k in range(1, 11)) / 100  # 1 of 100 docs
    assert code.null == pytest.approx(expected_null_mean, abs=0.03)
    assert code.bar == pytest.approx(np.floor((code.score - 0.05) * 100) / 100)


def test_calibrate_raises_a_bar_that_a_random_encoder_would_clear():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 60).astype(float)
    entry = pair_entry("pair_classification", labels + rng.normal(0, 1.2, 60), labels)
    null = null_floor(entry)
    bar, = calibrate({"datasets": {"small": entry}}, margin=0.3)
    assert bar.score > null and bar.bar == pytest.approx(np.ceil(null * 100) / 100)
    assert "raised to the random-encoder null" in bar.why


def test_calibrate_replaces_only_the_thresholds_table():
    text = "name = 'x'\n[instructions]\nquery = ''\n\n[thresholds]\nold = 0.1\n\n[api]\nx = 1\n"
    out = replace_thresholds(text, "[thresholds]\nnew = 0.2\n")
    assert "old = 0.1" not in out and "new = 0.2" in out
    assert out.index("[instructions]") < out.index("new = 0.2") < out.index("[api]")
    assert replace_thresholds("name = 'x'\n", "[thresholds]\na = 1\n").endswith(
        "\n\n[thresholds]\na = 1\n")


def test_calibrate_command_writes_a_loadable_profile(tmp_path, capsys):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "quality.json").write_text(json.dumps(document(np.random.default_rng(0))))
    out = tmp_path / "my-model.toml"
    assert cli_main(["calibrate", str(reports), "--profile", "tiny-qwen3", "--out",
                     str(out)]) == 0
    assert "3 bars, 1 datasets without one" in capsys.readouterr().out
    profile = load_profile(out)
    assert set(profile.thresholds) == {"good_sts", "XNLI/validation/en", "code"}
    text = out.read_text()
    assert "# random_pairs: max_ap" in text and "Calibrated by `embedgate calibrate`" in text
    original = load_profile(profile_dirs()[0] / "tiny-qwen3.toml")
    assert profile.instructions == original.instructions and profile.api == original.api
