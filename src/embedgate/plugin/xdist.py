"""pytest-xdist (`pytest -n N`): one server for all workers, one quality report, no perf timing.

The controller (the process `pytest -n N` starts) owns the server. When the first worker's
collection holds a test that needs it, the controller launches it with the same `launch` as a run
without xdist and publishes its `ServerInfo` as JSON in a directory made for the session; it
stops the server once, at the end of the session. Workers read that file and launch nothing: a
worker that dies leaves no process behind because it owns none, and the controller's server has
the guarantees of any launched server (own process group, parent-death signal, at-exit sweep).
A death after ready is written next to it, so every worker stops with the same message.

Each worker sends its quality results to the controller (`workeroutput`); the controller writes
one quality.json holding all of them, in the tasks' order. Perf scenarios fail on a worker:
pytest-benchmark disables itself under xdist, and workers sharing the CPUs would time each other.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from embedgate.models.profiles import ProfileError, load_profile
from embedgate.serve.lifecycle import ServerInfo
from embedgate.serve.liveness import EXIT_GRACE_S
from embedgate.session import RUN_KEY, RunState, get_run
from embedgate.plugin.server import SERVER_FIXTURE, ServerUnavailable, launch, teardown

SHARED_KEY = "embedgate_shared_dir"
QUALITY_KEY = "embedgate_quality_results"
PERF_REFUSED = ("embedgate: perf scenarios do not run under pytest-xdist: pytest-benchmark "
                "disables itself there, and workers sharing the CPUs and the server would time "
                "each other. Run them without -n (pytest -m perf, or -p no:xdist).")
ATTACH_POLL_S = 0.2


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _write(path: Path, text: str) -> None:
    """Atomically, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


class SharedServer:
    """The directory through which the controller's server is known to its workers."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.wanted = self.path / "wanted"        # a worker collected a test that needs it
        self.server_file = self.path / "server.json"
        self.died_file = self.path / "died.txt"
        self.info: ServerInfo | None = None

    @classmethod
    def create(cls) -> "SharedServer":
        return cls(Path(tempfile.mkdtemp(prefix="embedgate-xdist-")))

    # -- the controller ---------------------------------------------------------------------
    @property
    def published(self) -> bool:
        return self.server_file.exists()

    def publish(self, info: ServerInfo) -> None:
        data = {k: str(v) if isinstance(v, Path) else v
                for k, v in dataclasses.asdict(info).items()}
        _write(self.server_file, json.dumps({"server": data}))

    def publish_error(self, message: str) -> None:
        _write(self.server_file, json.dumps({"error": message}))

    def publish_death(self, message: str) -> None:
        if not self.died_file.exists():
            _write(self.died_file, message)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # -- a worker ---------------------------------------------------------------------------
    def attach(self, timeout: float) -> ServerInfo:
        """The controller's server; ServerUnavailable with the controller's own message."""
        deadline = time.monotonic() + timeout
        while not self.server_file.exists():
            if not self.wanted.exists() or time.monotonic() > deadline:
                raise ServerUnavailable(
                    "embedgate: the xdist controller started no server: no collected test "
                    f"named the {SERVER_FIXTURE} fixture, or it did not publish one within "
                    f"{timeout:g} s")
            time.sleep(ATTACH_POLL_S)
        data = json.loads(self.server_file.read_text(encoding="utf-8"))
        if "error" in data:
            raise ServerUnavailable(data["error"])
        fields = data["server"]
        if fields.get("log_path"):
            fields["log_path"] = Path(fields["log_path"])
        self.info = ServerInfo(**fields)
        return self.info

    def death(self, grace: float = EXIT_GRACE_S + 2.0) -> str | None:
        """The controller's death message, or None while the server's processes all run.

        A worker sees a process vanish before the controller's watchdog has written why; it
        waits up to `grace` s for that message (the exit code is known only to the controller).
        """
        if self.died_file.exists():
            return self.died_file.read_text(encoding="utf-8")
        pids = self.info.pids_at_ready if self.info else []
        gone = [pid for pid in pids if not _running(pid)]
        if not gone:
            return None
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.died_file.exists():
                return self.died_file.read_text(encoding="utf-8")
            time.sleep(ATTACH_POLL_S)
        return (f"embedgate: the server's process(es) {gone} are gone (seen from an xdist "
                f"worker; the controller wrote no exit code)")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _perf_item(item: pytest.Item) -> bool:
    return item.get_closest_marker("perf") is not None \
        or "benchmark" in getattr(item, "fixturenames", ())


# -- the controller's hooks (xdist calls them there only) -------------------------------------
@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    run = get_run(node.config)
    if run.shared is None:
        run.shared = SharedServer.create()
    node.workerinput[SHARED_KEY] = str(run.shared.path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """Launch the server before any test is scheduled, when a worker collected one needing it."""
    run = get_run(node.config)
    shared = run.shared
    if shared is None or shared.published or not shared.wanted.exists():
        return
    try:
        run.profile = run.profile or load_profile(run.settings.profile)
        shared.publish(launch(run, run.profile, on_death=shared.publish_death))
    except ProfileError as exc:
        run.server_error = f"embedgate: {exc}"
        shared.publish_error(run.server_error)
    except ServerUnavailable as exc:
        shared.publish_error(str(exc))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object | None) -> None:
    """Keep the quality results a worker sends back when it finishes."""
    blob = getattr(node, "workeroutput", {}).get(QUALITY_KEY)
    if blob:
        get_run(node.config).quality_results.extend(pickle.loads(blob))


def merge_quality_results(run: RunState) -> None:
    """The workers' results in the order of the tasks, as one run without xdist lists them."""
    order = {task.name: i for i, task in enumerate(run.tasks)}
    run.quality_results.sort(key=lambda r: order.get(r.name, len(order)))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    run = _run_or_none(config)
    if run is None or run.shared is None:
        return
    if is_worker(config):
        config.workeroutput[QUALITY_KEY] = pickle.dumps(run.quality_results)
        run.quality_results = []  # the controller writes the report
        return
    teardown(run)
    merge_quality_results(run)


def pytest_unconfigure(config: pytest.Config) -> None:
    run = _run_or_none(config)
    if run is not None and run.shared is not None and not is_worker(config):
        run.shared.remove()


def _run_or_none(config: pytest.Config) -> RunState | None:
    return config.stash.get(RUN_KEY, None)


# -- a worker's hooks -------------------------------------------------------------------------
@pytest.hookimpl(trylast=True)  # after embedgate.plugin made the RunState
def pytest_configure(config: pytest.Config) -> None:
    if is_worker(config) and SHARED_KEY in config.workerinput:
        get_run(config).shared = SharedServer(Path(config.workerinput[SHARED_KEY]))


@pytest.hookimpl(trylast=True)  # after -m / -k deselection
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    run = _run_or_none(config)
    if run is None or run.shared is None or not is_worker(config):
        return
    if any(SERVER_FIXTURE in getattr(i, "fixturenames", ()) and not _perf_item(i)
           for i in items):
        run.shared.wanted.touch()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if is_worker(item.config) and _perf_item(item):
        pytest.fail(PERF_REFUSED, pytrace=False)
