"""`embedgate compare` and `pytest --baseline` on real runs (issue #6, items 1-4).

The quality runs come from the session fixture `quality_run` (tests/conftest.py): each model is
served and scored once per session and its reports dir reused here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from embedgate.cli import main
from test_session_e2e import needs_hf, needs_vllm, run_pytest

BASE = "all-minilm-l6-v2"


def _scores(reports: Path) -> dict[str, float]:
    doc = json.loads((reports / "quality.json").read_text())
    return {name: entry["score"] for name, entry in doc["datasets"].items()}


@needs_vllm
def test_compare_repeated_runs_of_the_same_model_pass(quality_run, tmp_path):
    _, first = quality_run(BASE)
    result, again = quality_run(BASE, tag="-again", extra=("--baseline", str(first)))
    assert main(["compare", str(first), str(first), "--out", str(tmp_path / "self")]) == 0
    assert main(["compare", str(first), str(again), "--out", str(tmp_path / "repeat")]) == 0
    assert (tmp_path / "repeat" / "compare.md").read_text().startswith("## embedgate: PASS")
    # the same verdict from inside pytest: --baseline gates the run that made the reports
    assert result.returncode == 0, result.stdout[-3000:]
    assert "embedgate compare" in result.stdout and "PASS" in result.stdout
    assert (again / "compare.html").is_file()


@needs_vllm
def test_compare_random_candidate_fails_and_says_where_and_by_how_much(quality_run, tmp_path):
    _, base = quality_run(BASE)
    _, cand = quality_run("tiny-qwen3")
    assert main(["compare", str(base), str(cand), "--out", str(tmp_path)]) == 1
    md = (tmp_path / "compare.md").read_text()
    assert md.startswith(f"## embedgate: FAIL, `tiny-qwen3` may not replace `{BASE}`")
    failing = md[md.index("### Failing rules"):md.index("### Models")]
    b, c = _scores(base), _scores(cand)
    for name in ("sts_en", "code_search", "crosslingual_retrieval"):
        assert f"- {name}: " in failing, name
        assert f"delta {c[name] - b[name]:+.4f}" in failing, name


@needs_vllm
@needs_hf
def test_compare_mpnet_candidate_against_minilm_baseline(quality_run, tmp_path):
    """A real second model: the verdict follows the rule and every delta is the score change."""
    from embedgate.packaged_weights import PackagedWeightsError, all_mpnet_base_v2
    try:
        all_mpnet_base_v2(tmp_path / "cache")
    except PackagedWeightsError as exc:
        pytest.skip(str(exc))
    _, base = quality_run(BASE)
    result, cand = quality_run("all-mpnet-base-v2", backend="auto")  # the profile rules out vllm
    assert (cand / "quality.json").is_file(), result.stdout[-3000:]
    code = main(["compare", str(base), str(cand), "--out", str(tmp_path)])
    md = (tmp_path / "compare.md").read_text()
    b, c = _scores(base), _scores(cand)
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines()
            if line.startswith("| ") and " | " in line}
    lows = {}
    for name in b:
        row = rows[name]
        assert f"{c[name] - b[name]:+.4f} [" in row, row
        lows[name] = float(row.split(" | ")[4].split("[")[1].split(",")[0])
    assert code == (0 if all(low > -0.01 for low in lows.values()) else 1)
    assert ("PASS" if code == 0 else "FAIL") in md.splitlines()[0]
    assert "| dimension | 384 | 768 |" in md


def test_compare_baseline_option_fails_the_pytest_session(pytester, tmp_path):
    """`pytest --baseline DIR` turns a worse run into a failed session, with the reason."""
    from test_compare import GOLD, RNG, _pair_entry, _write_run
    good = GOLD + RNG.normal(0, 1.0, GOLD.size)
    baseline = _write_run(tmp_path / "baseline", {"sts": _pair_entry(good)}, "base")
    _write_run(pytester.path / "reports", {"sts": _pair_entry(good + RNG.normal(0, 4, GOLD.size))},
               "cand")
    pytester.makepyfile("def test_nothing(): pass\n")
    result = pytester.runpytest("--baseline", str(baseline), "--reports-dir",
                                str(pytester.path / "reports"))
    assert result.ret == 1
    out = result.stdout.str()
    assert "embedgate compare" in out and "FAIL, `cand` may not replace `base`" in out
    assert "- sts: spearman" in out
    assert (pytester.path / "reports" / "compare.md").is_file()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless chromium not installed")
def test_compare_html_report_renders_its_plots_in_headless_chromium(tmp_path):
    from test_compare import GOLD, RNG, _pair_entry, _perf, _write_run
    good = GOLD + RNG.normal(0, 1.0, GOLD.size)
    base = _write_run(tmp_path / "b", {"sts": _pair_entry(good)}, "base", perf=_perf(20))
    cand = _write_run(tmp_path / "c", {"sts": _pair_entry(good)}, "cand", perf=_perf(25))
    main(["compare", str(base), str(cand), "--out", str(tmp_path / "o")])
    shot = tmp_path / "shot.png"
    page = (tmp_path / "o" / "compare.html").as_uri()
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    f"--user-data-dir={tmp_path / 'chromium'}",
                    f"--screenshot={shot}", "--window-size=1280,2600", page],
                   capture_output=True, timeout=120, check=True)
    import numpy as np
    from PIL import Image
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (2600, 1280)
    assert (pixels < 128).sum() > 20_000  # tables and three plots drawn, not a blank page
