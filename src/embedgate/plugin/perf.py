"""The perf suite's hooks and fixtures (loaded by `embedgate.plugin`).

Hooks and thin fixtures only: options (group "embedgate-perf"), test order (the cold-start test
runs before anything else touches the server), the kit's section in the pytest-benchmark JSON,
the perf summary and the gate verdict, which fails the run when a rule fails. The perf state is
the session's ``run.perf``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import pytest

from embedgate.perf.rules import Baseline, RuleError, figures_from_benchmark_json, load_baseline
from embedgate.config.options import add_options
from embedgate.perf.options import OPTIONS, resolve
from embedgate.perf.runner import PerfSession, launch_and_probe
from embedgate.perf.state import PerfRun
from embedgate.perf.workload import WordStream, default_stream
from embedgate.resources import datasets_dir
from embedgate.session import RUN_KEY, get_run, resolve_plugin_options

COLD_FIXTURE = "perf_cold_start"
REQUESTS_EXPORT = "perf-requests.jsonl"
CORPUS = datasets_dir() / "sts_en.tsv"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser.getgroup("embedgate-perf", "embedgate perf: figures, baseline and gate"),
                OPTIONS)


@pytest.hookimpl(trylast=True)  # after embedgate.plugin has made the session's RunState
def pytest_configure(config: pytest.Config) -> None:
    state = get_run(config)
    options = resolve_plugin_options(config, OPTIONS, resolve)
    run = PerfRun(options)
    if options.perf_baseline is not None:
        try:
            run.baseline = load_baseline(options.perf_baseline)
        except RuleError as exc:
            raise pytest.UsageError(f"embedgate: --embedgate-perf-baseline: {exc}") from None
    state.perf = run


def _perf_run(config: pytest.Config) -> PerfRun | None:
    state = config.stash.get(RUN_KEY, None)
    return state.perf if state is not None else None


def _has_benchmark_plugin(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("benchmark")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """The cold-start test first (its first request must be the server's first); perf tests are
    skipped with a clear reason when pytest-benchmark is missing."""
    cold = [i for i in items if COLD_FIXTURE in getattr(i, "fixturenames", ())]
    if cold:
        items[:] = cold + [i for i in items if i not in cold]
    benchmarked = [i for i in items if "benchmark" in getattr(i, "fixturenames", ())]
    run = _perf_run(config)
    if not _has_benchmark_plugin(config):
        skip = pytest.mark.skip(reason="pytest-benchmark is not installed: "
                                       "pip install 'embedgate[test]'")
        for item in benchmarked:
            item.add_marker(skip)
        if benchmarked and run is not None:
            run.unmeasured = "pytest-benchmark is not installed, so no scenario was measured"
    elif benchmarked and run is not None and getattr(
            getattr(config, "_benchmarksession", None), "disabled", False):
        run.unmeasured = ("pytest-benchmark is disabled (--benchmark-disable, or xdist), so "
                          "its rounds were not run")


def pytest_runtest_setup(item: pytest.Item) -> None:
    names = getattr(item, "fixturenames", ())
    run = _perf_run(item.config)
    if run is not None and "embedding_server" in names and COLD_FIXTURE not in names:
        run.server_used_before_cold = True


@pytest.fixture(scope="session")
def perf_workload() -> WordStream:
    """The perf texts, read before the server starts so a missing corpus costs no launch."""
    return default_stream(CORPUS)


@pytest.fixture(scope="session")
def perf_session(pytestconfig: pytest.Config, perf_workload: WordStream, embedding_server,
                 model_profile, embedgate_settings) -> Iterator[PerfSession]:
    """Shared by the perf scenarios: memory probes, the load generator, calibrated inputs."""
    run = get_run(pytestconfig).perf
    session = PerfSession(embedding_server, max_tokens=model_profile.max_tokens,
                          options=run.options, stream=perf_workload,
                          record=run.record, api_key=embedgate_settings.api_key)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def perf_cold_start(pytestconfig: pytest.Config, perf_session: PerfSession, model_profile,
                    embedgate_settings) -> Callable[[Any], dict[str, Any]]:
    """Runs the startup scenario; tests using it are ordered before every other test."""
    run = get_run(pytestconfig).perf

    def measure(benchmark: Any) -> dict[str, Any]:
        launched = perf_session.server.backend != "external"
        cold = launched and not run.server_used_before_cold

        def launch_more() -> list[dict[str, Any]]:
            from embedgate.serve.launch import build_server

            if not launched:
                return []
            return [launch_and_probe(build_server(embedgate_settings, model_profile),
                                     text=perf_session.stream.text(0, 12),
                                     interval_s=run.options.perf_sample_ms / 1e3,
                                     api_key=embedgate_settings.api_key, gpu=perf_session.gpu)
                    for _ in range(run.options.perf_startup_launches)]

        return perf_session.run_cold_start(benchmark, cold=cold, launch_more=launch_more)

    return measure


@pytest.fixture
def perf_record(pytestconfig: pytest.Config) -> Callable[[str, dict[str, Any]], None]:
    """Record a scenario's figures for the summary and the gate (for scenarios outside the plan)."""
    return get_run(pytestconfig).perf.record


@pytest.fixture
def perf_requests_export(embedgate_settings) -> Path:
    """Where the open-loop scenario writes one JSON line per request (reports dir)."""
    return Path(embedgate_settings.reports_dir) / REQUESTS_EXPORT


def _compared_baseline(config: pytest.Config) -> Baseline | None:
    """The run pytest-benchmark loaded for --benchmark-compare: the kit rules' baseline too."""
    bs = getattr(config, "_benchmarksession", None)
    mapping = getattr(bs, "compared_mapping", None) or {}
    if not mapping:
        return None
    path, benches = list(mapping.items())[-1]
    return Baseline(str(path), figures_from_benchmark_json({"benchmarks": list(benches.values())}))


def _server_section(config: pytest.Config) -> dict[str, Any] | None:
    """The server under test, from the kit's run state (the command is already redacted)."""
    state = config.stash.get(RUN_KEY, None)
    info = getattr(state, "server", None)
    if info is None:
        return None
    return {"backend": info.backend, "version": info.version, "model": info.model,
            "served_name": info.served_name, "startup_s": info.startup_s,
            "rss_at_ready_bytes": info.rss_at_ready_bytes, "command": list(info.command),
            "members": list(info.members)}


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config: pytest.Config, benchmarks, output_json: dict) -> None:
    run = _perf_run(config)
    if run is None:
        return
    run.gate(output_json.get("machine_info"), _compared_baseline(config))
    output_json["embedgate_perf"] = {
        **run.json_section(), "server": _server_section(config),
        "machine": {"cpus": psutil.cpu_count(),
                    "memory_total_bytes": psutil.virtual_memory().total}}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = _perf_run(session.config)
    if run is None:
        return
    report = run.gate(None, _compared_baseline(session.config))
    if report is not None and not report.ok and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    run = _perf_run(config)
    if run is None or not run.results:
        return
    terminalreporter.section("embedgate perf")
    for line in run.summary_lines():
        terminalreporter.write_line(line)
    report = run.gate()
    if report is not None:
        source = run.gate_source or "the --benchmark-compare run"
        terminalreporter.section(f"embedgate perf gate (baseline: {source})",
                                 red=not report.ok, green=report.ok)
        for line in report.lines():
            terminalreporter.write_line(line, red=line.startswith("FAIL"))
