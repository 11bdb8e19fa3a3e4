"""`pytest -n 2` runs the quality and api suites against one server and gives the verdicts and the
report that a run without xdist gives (embedgate.plugin.xdist).

Each suite runs twice in a subprocess, as a user would, against the hf backend (the quickest
real server to start): once with `-n 2`, once without. A small plugin records, for every test,
which worker ran it and which server PID it was given, so "one server" is checked from the
workers' side, not from the log directory alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from test_session_e2e import clean_env, needs_hf, pytest_cmd

ROOT = Path(__file__).resolve().parents[1]

RECORD = textwrap.dedent("""
    import os
    def pytest_runtest_call(item):
        info = item.funcargs.get("embedding_server")
        if info is not None:
            with open(os.environ["EMBEDGATE_TEST_RECORD"], "a") as fh:
                fh.write(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} {info.pid}\\n")
""")


def run_suite(work: Path, suite: str, marker: str, *extra: str) -> dict:
    work.mkdir(parents=True)
    (work / "embedgate_record.py").write_text(RECORD)
    record = work / "record.txt"
    env = {**clean_env(), "PYTHONPATH": os.pathsep.join([str(work), *sys.path]),
           "EMBEDGATE_TEST_RECORD": str(record)}
    xml = work / "junit.xml"
    proc = subprocess.run(
        pytest_cmd(str(ROOT / suite), "-m", marker, "--embedgate-backend", "hf",
                   "--embedgate-reports-dir", str(work / "reports"),
                   "--embedgate-cache-dir", str(work.parent / "cache"), "-p", "embedgate_record",
                   f"--junitxml={xml}", *extra),
        cwd=work, env=env, text=True, capture_output=True, timeout=900)
    outcomes = {}
    for case in ET.parse(xml).iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[f"{case.get('classname')}::{case.get('name')}"] = (
            "failed" if failed else "skipped" if case.find("skipped") is not None else "passed")
    lines = [line.split() for line in record.read_text().splitlines()] if record.exists() else []
    return {"proc": proc, "outcomes": outcomes, "reports": work / "reports",
            "workers": {w for w, _ in lines}, "server_pids": {int(p) for _, p in lines}}


def check_one_server(run: dict, *, workers: int) -> None:
    out = run["proc"].stdout
    assert len(run["workers"]) == workers, (run["workers"], out[-3000:])
    assert len(run["server_pids"]) == 1, f"servers seen by the tests: {run['server_pids']}"
    logs = list((run["reports"] / "logs").glob("server-*.log"))
    assert len(logs) == 1, logs
    assert out.count("server: time to ready") == 1 and "server: stopped, no process left" in out


@pytest.fixture(scope="module")
def quality_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("xdist-quality")
    return (run_suite(base / "serial", "tests_quality", "quality"),
            run_suite(base / "xdist", "tests_quality", "quality", "-n", "2"))


@pytest.mark.long
@needs_hf
def test_xdist_quality_one_server_one_complete_report_same_verdicts(quality_runs):
    serial, xdist = quality_runs
    check_one_server(serial, workers=1)
    check_one_server(xdist, workers=2)
    assert xdist["proc"].returncode == serial["proc"].returncode == 0, xdist["proc"].stdout[-3000:]
    one = json.loads((serial["reports"] / "quality.json").read_text())["datasets"]
    two = json.loads((xdist["reports"] / "quality.json").read_text())["datasets"]
    shipped = {"sts_en", "atec_zh", "xnli_multilingual", "xnli_crosslingual", "code_search",
               "crosslingual_retrieval"}
    assert shipped <= set(one), sorted(one)  # every shipped dataset was judged
    bars = {k: v for k, v in serial["outcomes"].items() if "test_quality_meets_threshold" in k}
    assert xdist["outcomes"] == serial["outcomes"] and len(bars) == len(one)
    assert list(two) == list(one)  # every dataset, in the same order
    for name in one:
        assert two[name]["passed"] == one[name]["passed"], name
        assert two[name]["n"] == one[name]["n"], name
        assert two[name]["score"] == pytest.approx(one[name]["score"], abs=1e-6), name
    table = xdist["proc"].stdout[xdist["proc"].stdout.index("embedgate quality"):]
    passed = sum(outcome == "passed" for outcome in bars.values())
    assert passed >= 3 and table.count("PASS") == passed


@pytest.fixture(scope="module")
def api_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("xdist-api")
    return (run_suite(base / "serial", "tests_api", "api"),
            run_suite(base / "xdist", "tests_api", "api", "-n", "2"))


@pytest.mark.long
@needs_hf
def test_xdist_api_one_server_same_verdicts(api_runs):
    serial, xdist = api_runs
    check_one_server(serial, workers=1)
    check_one_server(xdist, workers=2)
    assert xdist["proc"].returncode == serial["proc"].returncode == 0, xdist["proc"].stdout[-3000:]
    assert xdist["outcomes"] == serial["outcomes"] and len(serial["outcomes"]) >= 30


@needs_hf
def test_xdist_perf_is_refused_with_the_reason(tmp_path):
    run = run_suite(tmp_path / "perf", "tests_perf/test_latency.py", "perf", "-n", "2")
    out = run["proc"].stdout
    assert run["proc"].returncode == 1, out[-3000:]
    assert set(run["outcomes"].values()) == {"failed"} and len(run["outcomes"]) == 3
    assert "perf scenarios do not run under pytest-xdist" in out
    assert not (run["reports"] / "logs").exists()  # no server was started for nothing
