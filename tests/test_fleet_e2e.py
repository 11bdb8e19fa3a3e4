"""Whole sessions against replicas behind a balancer (--embedgate-replicas 2), as a user runs them.

One session is two vLLM CPU replicas behind nginx running part of the api suite (marked
`long`: ~1.5 min; the whole api suite through the same topology is
measured in the README). The other kills one hf replica while load runs: the errors are counted,
the session fails naming that replica with its log tail, and no process of the set is left.
"""

from __future__ import annotations

import importlib.util
import json
import re
import textwrap
from pathlib import Path

import psutil
import pytest

from test_fleet import NGINX_MISSING
from test_session_e2e import run_pytest

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.skipif(NGINX_MISSING, reason="nginx is not installed (Debian: "
                                                      "apt-get install nginx-light)")

HOLD_PIDS = textwrap.dedent("""
    import json
    def test_zz_write_pids(embedding_server):
        with open("pids.json", "w") as fh:
            json.dump({"at_ready": embedding_server.pids_at_ready,
                       "members": embedding_server.members}, fh)
""")

KILL_A_REPLICA = textwrap.dedent("""
    import json, threading, time, psutil
    from embedgate.perf.loadgen import LoadGenerator
    def test_a_replica_dies_under_load(embedding_server):
        with open("pids.json", "w") as fh:
            json.dump({"at_ready": embedding_server.pids_at_ready,
                       "members": embedding_server.members}, fh)
        victim = [m for m in embedding_server.members if m["role"] == "replica 2 of 2"][0]
        out = {}
        with LoadGenerator(embedding_server.base_url, embedding_server.served_name,
                           timeout_s=10) as gen:
            reqs = [gen.prepare(f"text number {i}") for i in range(400)]
            def load():
                out["result"] = gen.run(reqs, concurrency=4)
            worker = threading.Thread(target=load)
            worker.start()
            time.sleep(0.5)
            psutil.Process(victim["pid"]).kill()
            worker.join(timeout=120)
        result = out["result"]
        with open("load.json", "w") as fh:
            json.dump({"n": result.n_requests, "errors": result.n_errors,
                       "first": result.errors[:2]}, fh)
        assert result.n_errors == 0, f"{result.n_errors} of {result.n_requests} failed"
    def test_b_never_runs(embedding_server, embedding_client):
        embedding_client.embed(["hello"])
""")


def all_gone(pids) -> bool:
    def gone(pid):
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
    return all(gone(pid) for pid in pids)


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None,
                    reason="the hf backend needs sentence-transformers")
def test_session_replica_killed_under_load_fails_naming_it_and_leaves_nothing(tmp_path):
    (tmp_path / "test_kill.py").write_text(KILL_A_REPLICA)
    result = run_pytest(tmp_path, "test_kill.py", "--embedgate-backend", "hf",
                        "--embedgate-replicas", "2", "--embedgate-startup-timeout", "240",
                        timeout=400)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out[-3000:]  # interrupted: the session stopped
    load = json.loads((tmp_path / "load.json").read_text())
    assert load["n"] == 400 and load["errors"] > 0  # the dead replica's requests counted
    assert "test_b_never_runs" not in out, out[-3000:]  # the session stopped at the death
    assert "Interrupted: embedgate: the hf server (replica 2 of 2) for model" in out
    pids = json.loads((tmp_path / "pids.json").read_text())
    victim_log = [m["log_path"] for m in pids["members"] if m["role"] == "replica 2 of 2"][0]
    assert f"log: {victim_log}" in out and "embedgate.serve.hf_server" in out  # its log tail
    assert "server: stopped, no process left" in out
    assert all_gone(pids["at_ready"])


@pytest.mark.long
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")
def test_session_two_vllm_replicas_pass_the_api_contract_through_nginx(tmp_path):
    (tmp_path / "test_zz_pids.py").write_text(HOLD_PIDS)
    suite = REPO / "tests_api"
    result = run_pytest(tmp_path, str(suite / "test_contract_shape.py"),
                        str(suite / "test_contract_errors.py"), str(suite / "test_invariance.py"),
                        "test_zz_pids.py", "-p", "no:randomly",
                        "--embedgate-backend", "vllm", "--embedgate-replicas", "2",
                        timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert re.search(r"\d+ passed", out) and " failed" not in out
    for role in ("replica 1 of 2", "replica 2 of 2", "balancer"):
        assert re.search(rf"server: {role} at http://127\.0\.0\.1:\d+: RSS at ready \d+ MiB",
                         out), out[-3000:]
    assert "server: stopped, no process left" in out
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert len(pids["members"]) == 3 and len(pids["at_ready"]) >= 5  # 2 x (API + engine) + nginx
    assert all_gone(pids["at_ready"])
