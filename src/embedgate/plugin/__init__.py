"""The embedgate pytest plugin: options, markers, the server and client fixtures, the summary.

Hooks and thin fixtures only: options are `embedgate.config`, the server is `embedgate.serve`,
scoring is `embedgate.quality`, the verdict `embedgate.verdict` and its files `embedgate.report`.
The perf suite's hooks are `embedgate.plugin.perf` and the MTEB benchmarks'
`embedgate.plugin.benchmarks`, both loaded with this module.

The top layer: may import every other part of the kit except `embedgate.cli`.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Iterator

import pytest

from embedgate.config.options import OptionError, add_options, cli_values, read_config_table
from embedgate.perf.options import OPTIONS as PERF_OPTIONS
from embedgate.quality.benchmark_options import OPTIONS as BENCHMARK_OPTIONS
from embedgate.quality.datasets import DatasetError
from embedgate.quality.truncation import OverLimitError
from embedgate.report.files import gate_against_baseline
from embedgate.serve.client import EmbeddingClient
from embedgate.models.profiles import ModelProfile, ProfileError, load_profile
from embedgate.quality.scoring import CachingEncoder, ErroredTask, TaskResult, evaluate_task
from embedgate.quality.results_json import quality_document, write_quality_json
from embedgate.report.quality_table import quality_table, verdict_lines
from embedgate.session import RUN_KEY, RunState, get_run, path_base
from embedgate.serve.lifecycle import ServerInfo, stop_all
from embedgate.config.settings import OPTIONS, Settings, resolve
from embedgate.quality.tasks import TaskError, TaskSpec, all_tasks

pytest_plugins = ("embedgate.plugin.perf", "embedgate.plugin.server", "embedgate.plugin.xdist",
                  "embedgate.plugin.benchmarks")

PROGRESS_MIN_TEXTS = 1000  # smaller sets encode in seconds: no progress lines

MARKERS = {
    "quality": "quality(dataset=None): embedding quality against profile thresholds",
    "api": "api: OpenAI embeddings API contract and invariance checks",
    "perf": "perf: latency, throughput and memory benchmarks (pytest-benchmark)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser.getgroup("embedgate", "embedgate: embedding-server conformance"), OPTIONS)


def _on_sigterm(signum, frame) -> None:
    """A CI runner cancelling the job sends SIGTERM: stop the servers, then die as asked."""
    stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS.values():
        config.addinivalue_line("markers", marker)
    base = path_base(config)
    try:
        table = read_config_table(config.rootpath, OPTIONS + PERF_OPTIONS + BENCHMARK_OPTIONS)
        settings = resolve(cli_values(config.getoption, OPTIONS), dict(os.environ), table, base)
    except OptionError as exc:
        raise pytest.UsageError(f"embedgate: {exc}") from None
    try:
        tasks = all_tasks(settings.datasets, base.directory(settings.sources["datasets"]))
    except (TaskError, ValueError) as exc:
        raise pytest.UsageError(f"embedgate: {exc}") from None
    config.stash[RUN_KEY] = RunState(settings, tasks=tasks, config_table=table)
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
        signal.signal(signal.SIGTERM, _on_sigterm)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One quality test per task (built-in fixtures, the user's datasets, MTEB benchmarks with
    the `mteb` marker), id = task name."""
    if "quality_task" in metafunc.fixturenames:
        from embedgate.plugin.benchmarks import is_benchmark  # a plugin: imported by pytest
        tasks = get_run(metafunc.config).tasks
        metafunc.parametrize("quality_task", [
            pytest.param(t, id=t.name, marks=pytest.mark.mteb if is_benchmark(t) else ())
            for t in tasks])


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


def encode_urls(server: ServerInfo, asked: tuple[str, ...]) -> list[str]:
    """The servers encode batches go to: the server under test alone by default; with
    --embedgate-encode-url, those URLs (`replicas`: each launched replica directly)."""
    if not asked:
        return [server.base_url]
    urls: list[str] = []
    for url in asked:
        if url == "replicas":
            urls += [m["base_url"] for m in server.members
                     if (m["role"] or "").startswith("replica")]
        else:
            urls.append(url)
    return urls


def encode_client_args(settings: Settings) -> dict[str, int]:
    """--embedgate-encode-batch-size / -concurrency where set; the client's defaults otherwise."""
    args = {"batch_size": settings.encode_batch_size, "concurrency": settings.encode_concurrency}
    return {k: v for k, v in args.items() if v is not None}


@pytest.fixture(scope="session")
def quality_encoder(pytestconfig: pytest.Config, embedding_server: ServerInfo,
                    embedgate_settings: Settings,
                    model_profile: ModelProfile) -> Iterator[CachingEncoder]:
    """Encodes through the server once per distinct text for the whole session, its batches
    spread over --embedgate-encode-url servers when given; texts over the model's limit go as
    --embedgate-truncation says (plugin.benchmarks)."""
    first, *extra = encode_urls(embedding_server, embedgate_settings.encode_urls)
    with EmbeddingClient(first, embedding_server.served_name, extra_urls=extra,
                         api_key=embedgate_settings.api_key,
                         **encode_client_args(embedgate_settings)) as client:
        from embedgate.plugin.benchmarks import limit_aware_encoder
        encoder = limit_aware_encoder(pytestconfig, client, embedding_server, model_profile,
                                      embedgate_settings, _progress_writer(pytestconfig))
        yield encoder
        get_run(pytestconfig).notes.append(encoder.summary())


@pytest.fixture(scope="session")
def quality_evaluator(pytestconfig: pytest.Config, quality_encoder: CachingEncoder,
                      model_profile: ModelProfile, embedgate_settings: Settings):
    """evaluate(task) -> TaskResult, once per task (the bar and the reproduction check of a
    benchmark share it), recorded for quality.json and the summary table. Data that cannot be
    read or a text the server refuses fails the test with the reason, never a traceback."""
    from embedgate.plugin.benchmarks import annotate
    run = get_run(pytestconfig)
    done: dict[str, TaskResult] = {}

    def evaluate(task: TaskSpec) -> TaskResult:
        if task.name in done:
            earlier = done[task.name]
            if isinstance(earlier, str):  # the same failure, for the bar and the reproduction check
                pytest.fail(earlier, pytrace=False)
            return earlier
        try:
            result = evaluate_task(task, quality_encoder, model_profile,
                                   instructions=embedgate_settings.instructions,
                                   n_resamples=embedgate_settings.bootstrap_resamples,
                                   record_only=embedgate_settings.record_only,
                                   ranking=embedgate_settings.ranking)
        except Exception as exc:  # listed in quality.json as errored, so compare fails on it
            run.quality_results.append(ErroredTask(task.name, task.kind, task.main_metric,
                                                   f"{type(exc).__name__}: {exc}"))
            if not isinstance(exc, (DatasetError, OverLimitError)):
                raise
            done[task.name] = f"{task.name}: {exc}"
            pytest.fail(done[task.name], pytrace=False)
        annotate(result, task, quality_encoder)
        done[task.name] = result
        run.quality_results.append(result)
        return result
    return evaluate


@pytest.hookimpl(trylast=True)  # after pytest-benchmark has written its JSON
def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    if run is None or hasattr(session.config, "workerinput"):  # xdist: the controller writes
        return
    if run.quality_results:
        path = run.settings.reports_dir / "quality.json"
        write_quality_json(path, quality_document(run.quality_results, run=run.describe()))
        run.notes.append(f"quality report: {path}")
    if run.settings.baseline is not None and session.exitstatus in (0, 1):
        code, lines = gate_against_baseline(run.settings.baseline, run.settings.reports_dir,
                                            run.settings.compare_margins,
                                            run.settings.compare_not_shown)
        run.compare_lines = lines
        if code != 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is None or (run.server is None and run.server_error is None
                       and not run.compare_lines and not run.quality_results):
        return
    if run.compare_lines:
        terminalreporter.section("embedgate compare")
        for line in run.compare_lines:
            terminalreporter.write_line(line)
    if run.quality_results:
        terminalreporter.section("embedgate quality")
        for line in quality_table(run.quality_results):
            terminalreporter.write_line(line)
        for line in verdict_lines(run.quality_results):
            terminalreporter.write_line(line, red=line.startswith("FAIL"))
    terminalreporter.section("embedgate")
    for line in run.summary_lines():
        terminalreporter.write_line(line)
