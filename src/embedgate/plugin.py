"""The embedgate pytest plugin: options, markers, the server and client fixtures, the summary.

Hooks and thin fixtures only; the work is in settings.py, launcher.py, server.py and client.py.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Iterator

import pytest

from embedgate.cli import gate_against_baseline
from embedgate.client import EmbeddingClient
from embedgate.launcher import build_server, missing_path_hint
from embedgate.model_profiles import ModelProfile, ProfileError, load_profile
from embedgate.quality import CachingEncoder, TaskResult, evaluate_task
from embedgate.report.quality_json import quality_document, write_quality_json
from embedgate.report.quality_table import quality_table
from embedgate.run import RUN_KEY, RunState, get_run
from embedgate.server import ServerInfo, ServerStartError, stop_all
from embedgate.settings import OPTIONS, Settings, SettingsError, from_environment
from embedgate.tasks import TaskError, TaskSpec, all_tasks

PROGRESS_MIN_TEXTS = 1000  # smaller sets encode in seconds: no progress lines

MARKERS = {
    "quality": "quality(dataset=None): embedding quality against profile thresholds",
    "api": "api: OpenAI embeddings API contract and invariance checks",
    "perf": "perf: latency, throughput and memory benchmarks (pytest-benchmark)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("embedgate", "embedgate: embedding-server conformance")
    for spec in OPTIONS:
        group.addoption(spec.flag, dest=f"embedgate_{spec.dest}", default=None,
                        metavar=spec.metavar, help=spec.help_text,
                        action="append" if spec.repeatable else "store")


def _on_sigterm(signum, frame) -> None:
    """A CI runner cancelling the job sends SIGTERM: stop the servers, then die as asked."""
    stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS.values():
        config.addinivalue_line("markers", marker)
    cli = {spec.dest: config.getoption(f"embedgate_{spec.dest}") for spec in OPTIONS}
    try:
        settings = from_environment(cli, config.rootpath)
    except SettingsError as exc:
        raise pytest.UsageError(f"embedgate: {exc}") from None
    base = (config.invocation_params.dir if settings.sources.get("datasets") == "--dataset"
            else config.rootpath)
    try:
        tasks = all_tasks(settings.datasets, base)
    except (TaskError, ValueError) as exc:
        raise pytest.UsageError(f"embedgate: {exc}") from None
    config.stash[RUN_KEY] = RunState(settings, tasks=tasks)
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
        signal.signal(signal.SIGTERM, _on_sigterm)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One quality test per task (built-in fixtures and the user's datasets), id = task name."""
    if "quality_task" in metafunc.fixturenames:
        tasks = get_run(metafunc.config).tasks
        metafunc.parametrize("quality_task", tasks, ids=[t.name for t in tasks])


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_all()


def pytest_internalerror(excrepr, excinfo) -> None:
    stop_all()


@pytest.fixture(scope="session")
def embedgate_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved kit options (command line > env > [tool.embedgate] > default)."""
    return get_run(pytestconfig).settings


@pytest.fixture(scope="session")
def model_profile(pytestconfig: pytest.Config, embedgate_settings: Settings) -> ModelProfile:
    """The model profile: thresholds, pooling, limits, Matryoshka dims, prompts."""
    try:
        profile = load_profile(embedgate_settings.profile)
    except ProfileError as exc:
        pytest.fail(f"embedgate: {exc}", pytrace=False)
    get_run(pytestconfig).profile = profile
    return profile


@pytest.fixture(scope="session")
def embedding_server(pytestconfig: pytest.Config, embedgate_settings: Settings,
                     model_profile: ModelProfile) -> Iterator[ServerInfo]:
    """The server under test, started once per session and always torn down.

    A start failure is raised once and pytest reuses it: every test that needs the server
    errors with the same message, and nothing waits again.
    """
    run = get_run(pytestconfig)
    sources = embedgate_settings.sources
    if sources.get("model") != "default" and sources.get("profile") == "default":
        run.notes.append(f"warning: --model given without --profile: checks use the facts and "
                         f"thresholds of the default profile {model_profile.name!r}")
    try:
        server = build_server(embedgate_settings, model_profile)
    except (ProfileError, ValueError) as exc:
        run.server_error = str(exc)
        pytest.fail(f"embedgate: {exc}", pytrace=False)
    try:
        info = server.start()
    except ServerStartError as exc:
        run.server_error = str(exc) + missing_path_hint(server.info.model)
        pytest.fail(run.server_error, pytrace=False)
    run.server = info
    try:
        yield info
    finally:
        server.stop()
        if info.backend != "external":
            run.leftover_pids = server.survivors()


@pytest.fixture
def embedding_client(embedding_server: ServerInfo,
                     embedgate_settings: Settings) -> Iterator[EmbeddingClient]:
    """A fresh client per test, bound to the served model name."""
    with EmbeddingClient(embedding_server.base_url, embedding_server.served_name,
                         api_key=embedgate_settings.api_key) as client:
        yield client


def _progress_writer(config: pytest.Config):
    """Progress lines for large sets, written past pytest's output capture."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return None

    def progress(label: str, done: int, total: int) -> None:
        if total >= PROGRESS_MIN_TEXTS:
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"embedgate: encoding {label}: {done}/{total} texts "
                                    f"({100 * done // total}%)")
    return progress


@pytest.fixture(scope="session")
def quality_encoder(pytestconfig: pytest.Config, embedding_server: ServerInfo,
                    embedgate_settings: Settings) -> Iterator[CachingEncoder]:
    """Encodes through the server once per distinct text for the whole session."""
    with EmbeddingClient(embedding_server.base_url, embedding_server.served_name,
                         api_key=embedgate_settings.api_key) as client:
        yield CachingEncoder(client.embed, progress=_progress_writer(pytestconfig))


@pytest.fixture(scope="session")
def quality_evaluator(pytestconfig: pytest.Config, quality_encoder: CachingEncoder,
                      model_profile: ModelProfile, embedgate_settings: Settings):
    """evaluate(task) -> TaskResult, recorded for quality.json and the summary table."""
    run = get_run(pytestconfig)

    def evaluate(task: TaskSpec) -> TaskResult:
        result = evaluate_task(task, quality_encoder, model_profile,
                               instructions=embedgate_settings.instructions,
                               n_resamples=embedgate_settings.bootstrap_resamples)
        run.quality_results.append(result)
        return result
    return evaluate


@pytest.hookimpl(trylast=True)  # after pytest-benchmark has written its JSON
def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    if run is None:
        return
    if run.quality_results:
        path = run.settings.reports_dir / "quality.json"
        write_quality_json(path, quality_document(run.quality_results, run=run.describe()))
        run.notes.append(f"quality report: {path}")
    if run.settings.baseline is not None and session.exitstatus in (0, 1):
        code, lines = gate_against_baseline(run.settings.baseline, run.settings.reports_dir,
                                            run.settings.compare_margins)
        run.compare_lines = lines
        if code != 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is None or (run.server is None and run.server_error is None
                       and not run.compare_lines):
        return
    if run.compare_lines:
        terminalreporter.section("embedgate compare")
        for line in run.compare_lines:
            terminalreporter.write_line(line)
    if run.quality_results:
        terminalreporter.section("embedgate quality")
        for line in quality_table(run.quality_results):
            terminalreporter.write_line(line)
    terminalreporter.section("embedgate")
    for line in run.summary_lines():
        terminalreporter.write_line(line)
