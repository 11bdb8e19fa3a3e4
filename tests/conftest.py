"""The kit's own tests: the long tier (end-to-end cases of a minute or more, marker ``long``, left
out of ``pytest tests`` unless ``--long-e2e``) and shared fixtures (real quality runs, each done
once per session and reused by every test that reads its reports)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from test_session_e2e import run_pytest

ROOT = Path(__file__).resolve().parents[1]
QUALITY_SUITE = ROOT / "tests_quality" / "test_quality.py"


LONG_ENV = "EMBEDGATE_LONG_TESTS"
LEFT_OUT = pytest.StashKey[int]()


def pytest_addoption(parser):
    parser.addoption("--long-e2e", action="store_true", default=False,
                     help="also run the long end-to-end cases (marker 'long'; env twin "
                          f"{LONG_ENV}=1); `pytest tests` leaves them out")


def pytest_configure(config):
    config.addinivalue_line("markers", "long: an end-to-end case of a minute or more (real "
                                       "servers on real data); runs with --long-e2e")


def long_wanted(config) -> bool:
    return bool(config.getoption("--long-e2e")) or os.environ.get(LONG_ENV, "") == "1"


@pytest.hookimpl(trylast=True)  # after -m and -k have chosen
def pytest_collection_modifyitems(config, items):
    """The long cases are deselected, so the count shows in pytest's own summary line."""
    if long_wanted(config):
        return
    long_cases = [item for item in items if item.get_closest_marker("long")]
    if long_cases:
        items[:] = [item for item in items if not item.get_closest_marker("long")]
        config.hook.pytest_deselected(items=long_cases)
    config.stash[LEFT_OUT] = len(long_cases)


def pytest_terminal_summary(terminalreporter, config):
    left_out = config.stash.get(LEFT_OUT, 0)
    if left_out:
        terminalreporter.write_line(f"{left_out} long end-to-end cases left out (marker 'long'); "
                                    "`pytest tests --long-e2e` runs them")


@pytest.fixture(scope="session")
def quality_run(tmp_path_factory):
    """quality_run(profile, backend, tag="", extra=()) -> (completed pytest, reports dir)."""
    done: dict[tuple[str, str, str], tuple[subprocess.CompletedProcess, Path]] = {}

    def run(profile: str, backend: str = "vllm", tag: str = "", extra: tuple[str, ...] = ()):
        key = (profile, backend, tag)
        if key not in done:
            work = tmp_path_factory.mktemp(f"quality-{profile}-{backend}{tag}")
            result = run_pytest(work, str(QUALITY_SUITE), "-m", "quality", "--embedgate-backend", backend,
                                "--embedgate-profile", profile, *extra, timeout=900)
            done[key] = (result, work / "reports")
        return done[key]
    return run
