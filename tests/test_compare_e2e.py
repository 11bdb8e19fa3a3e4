"""`embedgate compare` and `pytest --embedgate-baseline` on real runs (issue #6, items 1-4;
issue 17, item 3: worse / not shown / pass with power and Holm's error control).

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
ROOT = Path(__file__).resolve().parents[1]


def _scores(reports: Path) -> dict[str, float]:
    doc = json.loads((reports / "quality.json").read_text())
    return {name: entry["score"] for name, entry in doc["datasets"].items()}


def _rows(md: str) -> dict[str, list[str]]:
    """The quality table's cells per dataset, from compare.md."""
    part = md[md.index("### Quality"):md.index("### Performance") if "### Performance" in md
              else len(md)]
    return {cells[0]: cells for cells in
            ([c.strip() for c in line.strip("|").split(" | ")] for line in part.splitlines()
             if line.startswith("| ") and not line.startswith("| dataset"))}


def _delta_ci(cell: str) -> tuple[float, float, float]:
    delta, rest = cell.split(" [")
    low, high = rest.rstrip("]").split(", ")
    return float(delta), float(low), float(high)


@pytest.mark.long
@needs_vllm
def test_compare_repeated_runs_of_the_same_model_pass(quality_run, tmp_path):
    _, first = quality_run(BASE)
    result, again = quality_run(BASE, tag="-again", extra=("--embedgate-baseline", str(first)))
    for k in range(10):  # the same run against itself: pure computation, passes every time
        assert main(["compare", str(first), str(first), "--out", str(tmp_path / f"self{k}")]) == 0
    assert main(["compare", str(first), str(again), "--out", str(tmp_path / "repeat")]) == 0
    md = (tmp_path / "repeat" / "compare.md").read_text()
    assert md.startswith("## embedgate: PASS")
    for name, cells in _rows(md).items():
        assert cells[-1] == "PASS" or cells[-1].startswith("not applicable: baseline's "), cells
    # the same verdict from inside pytest: --embedgate-baseline gates the run that made the reports
    assert result.returncode == 0, result.stdout[-3000:]
    assert "embedgate compare" in result.stdout and "PASS" in result.stdout
    assert (again / "compare.html").is_file()


@needs_vllm
def test_compare_random_candidate_is_worse_and_says_where_and_by_how_much(quality_run, tmp_path):
    _, base = quality_run(BASE)
    _, cand = quality_run("tiny-qwen3")
    assert main(["compare", str(base), str(cand), "--out", str(tmp_path)]) == 1
    md = (tmp_path / "compare.md").read_text()
    assert md.startswith(f"## embedgate: FAIL, `tiny-qwen3` may not replace `{BASE}`")
    failing = md[md.index("### Failing rules"):md.index("### Models")]
    b, c = _scores(base), _scores(cand)
    rows = _rows(md)
    for name in ("sts_en", "code_search", "crosslingual_retrieval"):
        assert f"- {name}: " in failing and "worse: regression beyond -0.01" in failing, name
        assert f"delta {c[name] - b[name]:+.4f}" in failing, name
        assert rows[name][-1] == "WORSE" and _delta_ci(rows[name][4])[2] < -0.01


def _judged_by_the_ci(rows: dict[str, list[str]], margin: float = 0.01) -> dict[str, str]:
    """Every compared row's verdict must follow from its CI and Holm-adjusted p."""
    verdicts = {}
    for name, cells in rows.items():
        if cells[-1].startswith("not applicable: baseline's profile: English-only model"):
            continue
        delta, low, high = _delta_ci(cells[4])
        mde, p_holm = float(cells[7]), float(cells[8])
        assert mde > margin, (name, cells)
        if cells[-1] == "PASS":
            assert low > -margin, (name, cells)
        elif cells[-1] == "WORSE":
            assert high < -margin and p_holm < 0.025, (name, cells)
        else:
            assert cells[-1] == "NOT SHOWN (fails)" and low <= -margin, (name, cells)
            assert p_holm >= 0.025, (name, cells)
        verdicts[name] = cells[-1]
    return verdicts


@pytest.mark.long
@needs_vllm
@needs_hf
def test_compare_mpnet_candidate_against_minilm_baseline(quality_run, tmp_path):
    """A real second model: worse only where the evidence says so, not shown where the set is
    too small to tell, each with its power (MDE) and the Holm-adjusted p."""
    from embedgate.models.packaged_weights import PackagedWeightsError, all_mpnet_base_v2
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
    rows = _rows(md)
    for name in ("sts_en", "code_search", "crosslingual_retrieval"):
        assert f"{c[name] - b[name]:+.4f} [" in rows[name][4], rows[name]
    verdicts = _judged_by_the_ci(rows)
    assert verdicts["sts_en"] == "PASS"  # mpnet is the better model on STS
    assert "WORSE" not in verdicts.values()
    assert code == (1 if "NOT SHOWN (fails)" in verdicts.values() else 0)
    assert "Holm's step-down over the 3 compared datasets" in md
    assert "| dimension | 384 | 768 |" in md
    lenient = main(["compare", str(base), str(cand), "--not-shown", "pass",
                    "--out", str(tmp_path / "lenient")])
    assert lenient == 0
    print(md)


@needs_vllm
@needs_hf
def test_compare_candidate_made_worse_by_the_fault_proxy_is_worse(quality_run, tmp_path):
    """The same model (hf backend) behind the fault proxy's heavy per-request noise: worse."""
    from embedgate.api.proxy import FaultProxy
    from embedgate.config.settings import resolve
    from embedgate.models.profiles import load_profile
    from embedgate.serve.launch import build_server
    _, base = quality_run(BASE)
    settings = resolve({"backend": "hf", "cache_dir": str(tmp_path / "cache"),
                        "reports_dir": str(tmp_path / "outer")}, {}, {}, tmp_path)
    with build_server(settings, load_profile(BASE)) as info:
        with FaultProxy(info.base_url, "nondeterministic", scale=3.0) as proxy:
            result = run_pytest(tmp_path, str(ROOT / "tests_quality" / "test_quality.py"), "-m",
                                "quality", "--embedgate-backend", "external",
                                "--embedgate-server-url", proxy.url, timeout=600)
    cand = tmp_path / "reports"
    assert (cand / "quality.json").is_file(), result.stdout[-3000:]
    assert main(["compare", str(base), str(cand), "--out", str(tmp_path / "cmp")]) == 1
    rows = _rows((tmp_path / "cmp" / "compare.md").read_text())
    verdicts = _judged_by_the_ci(rows)
    # retrieval loses about half its nDCG@10: worse after Holm; STS's paired CI is wider
    # (measured: -0.149 [-0.272, -0.010], Holm p 0.027), so it may only be not shown
    assert verdicts["code_search"] == verdicts["crosslingual_retrieval"] == "WORSE", verdicts
    assert "PASS" not in verdicts.values()


def test_compare_baseline_option_fails_the_pytest_session(pytester, tmp_path):
    """`pytest --embedgate-baseline DIR` turns a worse run into a failed session, with the reason."""
    from test_compare import GOLD, RNG, _pair_entry, _write_run
    good = GOLD + RNG.normal(0, 1.0, GOLD.size)
    baseline = _write_run(tmp_path / "baseline", {"sts": _pair_entry(good)}, "base")
    _write_run(pytester.path / "reports", {"sts": _pair_entry(good + RNG.normal(0, 4, GOLD.size))},
               "cand")
    pytester.makepyfile("def test_nothing(): pass\n")
    result = pytester.runpytest("--embedgate-baseline", str(baseline), "--embedgate-reports-dir",
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
