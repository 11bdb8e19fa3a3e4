"""Shared fixtures for the kit's own end-to-end tests: real quality runs, each done once per
session and reused by every test that reads its reports."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from test_session_e2e import run_pytest

ROOT = Path(__file__).resolve().parents[1]
QUALITY_SUITE = ROOT / "tests_quality" / "test_quality.py"


def pytest_configure(config):
    config.addinivalue_line("markers", "fleet_vllm: launches two vLLM CPU replicas behind a "
                                       "balancer (the slowest fleet case; -m 'not fleet_vllm' "
                                       "leaves it out)")


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
