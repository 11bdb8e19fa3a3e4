"""Server lifecycle (issue #2, item 3): early exit, never ready, teardown of the whole tree.

These drive EmbeddingServer with tiny stand-in commands so each case takes seconds; the same
code path runs the real backends in test_session_e2e.py.
"""

import subprocess
import sys
import textwrap
import time

import httpx
import psutil
import pytest

from embedgate.serve.lifecycle import (EmbeddingServer, ExternalServer, ServerInfo, ServerStartError,
                              free_port)

STUB = textwrap.dedent("""
    import json, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    name, port = sys.argv[1], int(sys.argv[2])
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = {"/health": {}, "/v1/models": {"data": [{"id": name}]}}.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(json.dumps(body or {}).encode())
        def log_message(self, *a): pass
    print("stub up", flush=True)
    HTTPServer(("127.0.0.1", port), H).serve_forever()
""")


def server_for(tmp_path, command, *, served="m", port=None, timeout=10.0, api_key=None):
    port = port or free_port()
    info = ServerInfo(backend="stub", base_url=f"http://127.0.0.1:{port}", served_name=served,
                      model="/models/m", log_path=tmp_path / "server.log")
    return EmbeddingServer(info, command, {}, startup_timeout=timeout, term_grace=3.0,
                           poll_interval=0.1, api_key=api_key)


def gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_server_ready_then_stopped(tmp_path):
    port = free_port()
    script = tmp_path / "stub.py"
    script.write_text(STUB)
    server = server_for(tmp_path, [sys.executable, str(script), "m", str(port)], port=port)
    with server as info:
        assert httpx.get(info.base_url + "/health").status_code == 200
        assert info.startup_s is not None and info.startup_s < 10
        assert info.rss_at_ready_bytes > 0 and info.pid in info.pids()
        pid = info.pid
        assert server.survivors() == [pid]  # seen at ready, still running
    assert gone(pid) and server.survivors() == []


def test_server_early_exit_fails_at_once_with_code_and_log_tail(tmp_path):
    cmd = [sys.executable, "-c",
           "import sys; [print(f'line {i}') for i in range(80)]; "
           "print('OSError: model /models/m not found'); sys.exit(3)"]
    t0 = time.monotonic()
    with pytest.raises(ServerStartError) as exc:
        server_for(tmp_path, cmd, timeout=60).start()
    assert time.monotonic() - t0 < 10
    msg = str(exc.value)
    assert "exited with code 3" in msg and "'/models/m'" in msg
    assert "OSError: model /models/m not found" in msg
    assert "line 79" in msg and "line 20" not in msg  # the tail: last 50 lines, not the head


def test_server_never_ready_times_out_and_is_killed(tmp_path):
    cmd = [sys.executable, "-c", "import time; print('loading', flush=True); time.sleep(600)"]
    server = server_for(tmp_path, cmd, timeout=2)
    t0 = time.monotonic()
    with pytest.raises(ServerStartError, match=r"timed out after 2 s") as exc:
        server.start()
    assert time.monotonic() - t0 < 10
    assert "loading" in str(exc.value)
    assert gone(server.proc.pid)


def test_server_wrong_served_name_is_not_ready(tmp_path):
    port = free_port()
    script = tmp_path / "stub.py"
    script.write_text(STUB)
    server = server_for(tmp_path, [sys.executable, str(script), "other", str(port)],
                        served="m", port=port, timeout=2)
    with pytest.raises(ServerStartError, match=r"lists \['other'\], not 'm'"):
        server.start()


def test_server_stop_kills_children_that_ignore_sigterm(tmp_path):
    # A parent that ignores SIGTERM and a grandchild that left the process group (setsid).
    cmd = [sys.executable, "-c", textwrap.dedent("""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        subprocess.Popen([sys.executable, "-c",
            "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
            start_new_session=True)
        time.sleep(600)
    """)]
    server = server_for(tmp_path, cmd, timeout=30)
    server.proc = subprocess.Popen(cmd, start_new_session=True)  # launched, not waited on
    deadline = time.monotonic() + 10
    while len(psutil.Process(server.proc.pid).children()) < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    tree = [server.proc.pid] + [c.pid for c in psutil.Process(server.proc.pid).children()]
    assert len(tree) == 2
    t0 = time.monotonic()
    server.stop()
    assert all(gone(p) for p in tree)
    assert server.survivors() == []
    assert time.monotonic() - t0 < 3 * server.term_grace


def test_server_log_redacts_api_key(tmp_path):
    cmd = [sys.executable, "-c", "import sys; sys.exit(1)", "--api-key", "sk-very-secret"]
    server = server_for(tmp_path, cmd, timeout=5, api_key="sk-very-secret")
    with pytest.raises(ServerStartError) as exc:
        server.start()
    assert "sk-very-secret" not in str(exc.value)
    assert "sk-very-secret" not in (tmp_path / "server.log").read_text()


def test_external_server_unreachable_fails_at_timeout_naming_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    info = ServerInfo(backend="external", base_url=url, served_name="m", model="m")
    with pytest.raises(ServerStartError, match=r"external server at .* timed out after 1 s "
                                               r"\(last probe: ConnectError\)") as exc:
        ExternalServer(info, startup_timeout=1).start()
    assert url in str(exc.value)


def test_external_server_ready_without_health_endpoint_when_models_lists_name(tmp_path):
    port = free_port()
    script = tmp_path / "stub.py"
    script.write_text(STUB.replace('"/health": {}, ', ""))  # a server with no /health at all
    stub = subprocess.Popen([sys.executable, str(script), "m", str(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        info = ServerInfo(backend="external", base_url=url, served_name="m", model="m")
        assert ExternalServer(info, startup_timeout=10).start().startup_s == 0.0
        wrong = ServerInfo(backend="external", base_url=url, served_name="x", model="x")
        with pytest.raises(ServerStartError, match=r"lists \['m'\], not 'x'"):
            ExternalServer(wrong, startup_timeout=1).start()
    finally:
        stub.kill()
        stub.wait()
