"""A server that dies after ready is reported once, with who died, the exit code and the log tail,
and what is left of it is stopped (embedgate.serve.liveness).

A stand-in server with one child process (as vLLM's API server has its engine core) runs for
real; the watchdog's clock is a fake, so no assertion depends on how busy the machine is.
"""

import os
import subprocess
import sys
import textwrap

import psutil
import pytest

from embedgate.serve.lifecycle import EmbeddingServer, ServerInfo, free_port
from embedgate.serve.liveness import Watchdog, headline, unreachable

# An HTTP stub that starts a child ("the engine") and exits with code 7 when the child dies,
# unless told to keep running without it.
STUB = textwrap.dedent("""
    import json, subprocess, sys, threading, time
    from http.server import BaseHTTPRequestHandler, HTTPServer
    name, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = {"/health": {}, "/v1/models": {"data": [{"id": name}]}}.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(json.dumps(body or {}).encode())
        def log_message(self, *a): pass
    def watch():
        engine.wait()
        print("engine core died", flush=True)
        if mode == "exit":
            import os; os._exit(7)
    threading.Thread(target=watch, daemon=True).start()
    print("stub up", flush=True)
    HTTPServer(("127.0.0.1", port), H).serve_forever()
""")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        import time
        time.sleep(0.01)  # let the real process move on; the fake clock decides the grace


@pytest.fixture
def stub_server(tmp_path):
    servers = []

    def make(mode):
        port = free_port()
        script = tmp_path / "stub.py"
        script.write_text(STUB)
        info = ServerInfo(backend="stub", base_url=f"http://127.0.0.1:{port}", served_name="m",
                          model="/models/m", log_path=tmp_path / f"server-{mode}.log")
        server = EmbeddingServer(info, [sys.executable, str(script), "m", str(port), mode], {},
                                 startup_timeout=30, term_grace=3.0, poll_interval=0.1)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def engine_of(server):
    children = psutil.Process(server.info.pid).children()
    assert len(children) == 1
    return children[0]


def test_watchdog_sees_nothing_while_every_process_runs(stub_server):
    server = stub_server("exit")
    assert len(server.info.pids_at_ready) == 2  # the server and its engine, recorded at ready
    deaths = []
    assert Watchdog(server, deaths.append).check() is None
    assert deaths == []


def test_watchdog_reports_an_engine_death_with_exit_code_and_log_tail(stub_server):
    server = stub_server("exit")
    engine = engine_of(server)
    engine.kill()
    engine.wait(10)
    clock, deaths = FakeClock(), []
    dog = Watchdog(server, deaths.append, exit_grace=60.0, clock=clock, sleep=clock.sleep)
    message = dog.check()
    assert deaths == [message] and dog.check() == message  # reported once, kept
    assert f"{engine.pid} (python)" in message.split(" gone;")[0]
    assert f"the server process {server.info.pid} exited with code 7" in message
    assert "--- last 50 log lines ---" in message and "engine core died" in message
    assert headline(message).startswith("embedgate: the stub server for model '/models/m' died")
    assert server.survivors() == []


def test_watchdog_stops_a_server_that_outlives_its_engine(stub_server):
    server = stub_server("linger")  # keeps answering without its engine: requests could hang
    engine = engine_of(server)
    engine.kill()
    engine.wait(10)
    clock = FakeClock()
    message = Watchdog(server, exit_grace=1.0, clock=clock, sleep=clock.sleep).check()
    assert (f"the server process {server.info.pid} was still running 1 s later and was stopped "
            f"by the kit") in message
    assert server.survivors() == [] and server.proc.poll() is not None


def test_watchdog_thread_calls_back_on_death(stub_server):
    server = stub_server("exit")
    deaths = []
    dog = Watchdog(server, deaths.append, interval=0.05).start()
    try:
        engine_of(server).kill()
        dog._thread.join(timeout=30)  # the thread ends after the first death
    finally:
        dog.stop()
    assert len(deaths) == 1 and "exited with code 7" in deaths[0]


def test_watchdog_stopped_before_teardown_reports_nothing(stub_server):
    server = stub_server("exit")
    deaths = []
    dog = Watchdog(server, deaths.append, interval=0.05).start()
    dog.stop()
    server.stop()  # a deliberate teardown is not a death
    assert dog.check() is None and deaths == []


def test_unreachable_names_the_url_only_when_nothing_answers(stub_server):
    server = stub_server("exit")
    assert unreachable(server.info.base_url) is None
    server.stop()
    message = unreachable(server.info.base_url)
    assert message.startswith(f"embedgate: the server at {server.info.base_url} stopped answering")
    assert "ConnectError" in message


def test_session_against_an_external_server_stops_when_it_stops_answering(pytester, tmp_path,
                                                                          monkeypatch):
    """The plugin's part, on a server it did not launch: the test that finds it gone fails with
    the reason in its report, the session stops, and the tests after it never run."""
    port = free_port()
    script = tmp_path / "stub.py"
    script.write_text(STUB)
    stub = subprocess.Popen([sys.executable, str(script), "m", str(port), "linger"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert stub.stdout.readline().strip() == "stub up"
        for key in [k for k in os.environ if k.startswith("EMBEDGATE_")]:
            monkeypatch.delenv(key)
        monkeypatch.setenv("STUB_PID", str(stub.pid))
        pytester.makepyfile(test_gone=textwrap.dedent("""
            import os, signal
            import httpx
            def test_a_server_goes_away(embedding_server):
                os.kill(int(os.environ["STUB_PID"]), signal.SIGKILL)
                httpx.get(embedding_server.base_url + "/v1/models", timeout=5)
            def test_b_never_runs(embedding_server):
                pass
        """))
        result = pytester.runpytest_subprocess(
            "--embedgate-server-url", f"http://127.0.0.1:{port}", "--embedgate-model", "m",
            "-p", "no:cacheprovider", "-rA", timeout=120)
    finally:
        stub.kill()
        stub.wait()
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED, out
    assert "test_b_never_runs" not in out
    assert f"the server at http://127.0.0.1:{port} stopped answering during the session" in out
    assert "embedgate: the server died" in out  # the section in the failed test's report
