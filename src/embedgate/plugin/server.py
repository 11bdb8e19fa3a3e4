"""The session's server: launched once, watched while tests run, and stopped once.

Hooks and helpers for `embedgate.plugin` (its `embedding_server` fixture) and
`embedgate.plugin.xdist` (an xdist controller runs the same launch for all its workers).

A server that dies after ready stops the session: the watchdog (`embedgate.serve.liveness`)
reports the first death with the exit code and log tail, and stops what is left of the server
so that no request waits on it; the test that was running fails on its connection error, and
`session.shouldstop` ends the run after it. A test that fails while the server is already gone
carries the death message in its report. An external server is probed after a failed test:
when it no longer answers at all, the session stops too.
"""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from embedgate.models.profiles import ModelProfile, ProfileError
from embedgate.serve.fleet import Fleet
from embedgate.serve.launch import build_server, missing_path_hint
from embedgate.serve.lifecycle import EmbeddingServer, ServerInfo, ServerStartError
from embedgate.serve.liveness import Watchdog, headline, unreachable
from embedgate.session import RunState, get_run

SERVER_FIXTURE = "embedding_server"


class ServerUnavailable(Exception):
    """The server could not be built or started; the message is what every test shows."""


def launch(run: RunState, profile: ModelProfile,
           on_death: Callable[[str], None] | None = None) -> ServerInfo:
    """Start the session's server and its watchdog; `run` keeps both (and any failure).
    `on_death` is also told of a death (the xdist controller tells its workers)."""
    settings = run.settings
    sources = settings.sources
    if sources.get("model") != "default" and sources.get("profile") == "default":
        run.notes.append(f"warning: --embedgate-model given without --embedgate-profile: checks "
                         f"use the facts and thresholds of the default profile {profile.name!r}")
    try:
        server = build_server(settings, profile)
    except (ProfileError, ValueError) as exc:
        run.server_error = f"embedgate: {exc}"
        raise ServerUnavailable(run.server_error) from None
    try:
        info = server.start()
    except ServerStartError as exc:
        run.server_error = str(exc) + missing_path_hint(server.info.model)
        raise ServerUnavailable(run.server_error) from None
    run.server, run.owned_server = info, server
    if isinstance(server, (EmbeddingServer, Fleet)):
        def report(message: str) -> None:
            if on_death is not None:
                on_death(message)
            died(run, message)
        run.watchdog = Watchdog(server, on_death=report).start()
    return info


def teardown(run: RunState) -> None:
    """Stop the watchdog, then the server (once), and note any process it left behind."""
    server, run.owned_server = run.owned_server, None
    if run.watchdog is not None:
        run.watchdog.stop()
    if server is None:
        return
    server.stop()
    if run.server is not None and run.server.backend != "external":
        run.leftover_pids = server.survivors()


def died(run: RunState, message: str) -> None:
    """Record the server's death and end the session after the running test."""
    if run.server_death is None:
        run.server_death = message
    if run.session is not None:
        run.session.shouldstop = headline(run.server_death)


def death_now(run: RunState) -> str | None:
    """Why the session's server is gone, checking now; None while it serves."""
    if run.server_death is not None:
        return run.server_death
    if run.watchdog is not None:
        return run.watchdog.check()  # on death, calls died()
    if run.shared is not None and (message := run.shared.death()) is not None:
        died(run, message)
        return message
    if run.server is not None and run.server.backend == "external":
        message = unreachable(run.server.base_url, api_key=run.settings.api_key)
        if message is not None:
            died(run, message)
        return message
    return None


def uses_server(item: pytest.Item) -> bool:
    return SERVER_FIXTURE in getattr(item, "fixturenames", ())


@pytest.fixture(scope="session")
def embedding_server(pytestconfig: pytest.Config, embedgate_settings,
                     model_profile: ModelProfile) -> Iterator[ServerInfo]:
    """The server under test, started once per session and always torn down.

    A start failure is raised once and pytest reuses it: every test that needs the server
    errors with the same message, and nothing waits again. On an xdist worker it is the
    controller's server (see embedgate.plugin.xdist), launched once for all workers.
    """
    run = get_run(pytestconfig)
    if run.shared is not None:
        try:
            run.server = run.shared.attach(embedgate_settings.startup_timeout)
        except ServerUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        yield run.server
        return
    try:
        info = launch(run, model_profile)
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield info
    finally:
        teardown(run)


def pytest_sessionstart(session: pytest.Session) -> None:
    run = get_run(session.config)
    run.session = session


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that needs the server does not start once the server is known to be dead."""
    run = get_run(item.config)
    if not uses_server(item) or run.server is None:
        return
    message = run.server_death or (run.shared.death() if run.shared is not None else None)
    if message is not None:
        died(run, message)
        pytest.fail(message, pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed test against a server that is gone says so, and the session stops."""
    outcome = yield
    report = outcome.get_result()
    run = get_run(item.config)
    if report.failed and uses_server(item) and run.server is not None:
        message = death_now(run)
        if message is not None:
            died(run, message)
            report.sections.append(("embedgate: the server died", message))
