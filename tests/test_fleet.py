"""Topologies (serve.fleet): replicas behind a balancer as one server under test.

The replicas here are the trivial echo server (ready in a fraction of a second); the balancers
are the real nginx and sglang-router, each case skipping where its balancer is not installed.
One case launches two hf replicas through build_server, as a session does; test_fleet_e2e.py
runs whole sessions, with two vLLM CPU replicas.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from embedgate.config.options import PathBase
from embedgate.config.settings import resolve
from embedgate.models.profiles import load_profile
from embedgate.serve.fleet import Balancer, Fleet, balancer_launch, member_log, nginx_binary
from embedgate.serve.launch import build_server
from embedgate.serve.lifecycle import EmbeddingServer, ServerInfo, ServerStartError, free_port
from embedgate.serve.liveness import Watchdog

def _nginx_missing() -> bool:
    try:
        nginx_binary()
    except ValueError:
        return True
    return False


NGINX_MISSING = _nginx_missing()
ROUTER_MISSING = importlib.util.find_spec("sglang_router") is None
BALANCER_PARAMS = [
    pytest.param("nginx", marks=pytest.mark.skipif(
        NGINX_MISSING, reason="nginx is not installed (Debian: apt-get install nginx-light)")),
    pytest.param("sglang-router", marks=pytest.mark.skipif(
        ROUTER_MISSING, reason="sglang-router is not installed (pip install 'embedgate[scale]')")),
]


@pytest.fixture(params=BALANCER_PARAMS)
def balancer_kind(request) -> str:
    return request.param


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def replica(tmp_path, i: int, n: int, command: list[str] | None = None) -> EmbeddingServer:
    port = free_port()
    role = f"replica {i} of {n}"
    info = ServerInfo(backend="trivial", base_url=f"http://127.0.0.1:{port}", served_name="m",
                      model="m", role=role, log_path=member_log(tmp_path, "trivial", "t", role))
    cmd = command or [sys.executable, "-m", "embedgate.perf.trivial_server", "--port", str(port),
                      "--echo", "--served-name", "m"]
    return EmbeddingServer(info, cmd, {}, startup_timeout=20, term_grace=3.0, poll_interval=0.1)


def fleet_of(tmp_path, replicas: list[EmbeddingServer], kind: str) -> Fleet:
    port = free_port()
    cmd, files = balancer_launch(kind, python=sys.executable, port=port,
                                 worker_urls=[r.info.base_url for r in replicas],
                                 workdir=tmp_path / "lb")
    balancer = Balancer(ServerInfo(backend=kind, base_url=f"http://127.0.0.1:{port}",
                                   served_name="m", model="m", role="balancer",
                                   log_path=tmp_path / "balancer.log"),
                        cmd, {}, startup_timeout=30, term_grace=3.0, poll_interval=0.2,
                        secret_files=files)
    info = ServerInfo(backend="trivial", base_url=balancer.info.base_url, served_name="m",
                      model="m", log_path=balancer.info.log_path)
    return Fleet(info, replicas, balancer)


def test_fleet_ready_routes_requests_and_stops_every_process(tmp_path, balancer_kind):
    fleet = fleet_of(tmp_path, [replica(tmp_path, 1, 2), replica(tmp_path, 2, 2)], balancer_kind)
    with fleet as info:
        answer = httpx.post(info.base_url + "/v1/embeddings",
                            json={"model": "m", "input": ["a b", "c"]}, timeout=5)
        assert answer.status_code == 200 and len(answer.json()["data"]) == 2
        assert [m["role"] for m in info.members] == ["replica 1 of 2", "replica 2 of 2",
                                                     "balancer"]
        assert len({m["base_url"] for m in info.members}) == 3
        assert all(m["base_url"].startswith("http://127.0.0.1:") for m in info.members)
        rss = [m["rss_at_ready_bytes"] for m in info.members]
        assert all(r > 0 for r in rss) and info.rss_at_ready_bytes == sum(rss)
        pids = info.pids_at_ready
        assert len(pids) >= 3 and info.pid == fleet.balancer.info.pid
        assert fleet.gone_since_ready() == {}
    assert fleet.survivors() == []
    assert all(gone(pid) for pid in pids)


def test_fleet_replica_that_fails_to_start_names_itself_and_stops_the_rest(tmp_path,
                                                                          balancer_kind):
    bad = replica(tmp_path, 2, 2, [sys.executable, "-c",
                                   "import sys, time; time.sleep(0.5); "
                                   "print('replica-two-boom', flush=True); sys.exit(3)"])
    good = replica(tmp_path, 1, 2)
    fleet = fleet_of(tmp_path, [good, bad], balancer_kind)
    with pytest.raises(ServerStartError) as err:
        fleet.start()
    text = str(err.value)
    assert "(replica 2 of 2)" in text and "exited with code 3" in text
    assert "replica-two-boom" in text and str(bad.info.log_path) in text
    assert fleet.balancer.proc is None  # never launched: a replica was not ready
    assert good.info.pid is not None and gone(good.info.pid)
    assert fleet.survivors() == []


def test_fleet_replica_killed_mid_run_is_reported_with_its_log_and_all_stop(tmp_path,
                                                                           balancer_kind):
    fleet = fleet_of(tmp_path, [replica(tmp_path, 1, 2), replica(tmp_path, 2, 2)], balancer_kind)
    with fleet as info:
        victim = fleet.replicas[1]
        dog = Watchdog(fleet, interval=0.1, exit_grace=2.0)
        assert dog.check() is None
        psutil.Process(victim.info.pid).kill()
        victim.proc.wait(timeout=5)
        message = dog.check()
        assert message is not None
        assert "(replica 2 of 2)" in message and str(victim.info.pid) in message
        assert "exited with code -9" in message
        assert str(victim.info.log_path) in message and "trivial_server" in message
        assert fleet.survivors() == []  # the watchdog stopped the whole set
        with pytest.raises(httpx.HTTPError):
            httpx.post(info.base_url + "/v1/embeddings", json={"model": "m", "input": "x"},
                       timeout=2)
    assert all(gone(pid) for pid in info.pids_at_ready)


def settings_for(tmp_path, **cli):
    return resolve(cli, {}, {}, PathBase.of(tmp_path))


@pytest.mark.skipif(ROUTER_MISSING, reason="sglang-router is not installed")
def test_build_server_replicas_make_a_fleet_of_distinct_loopback_ports(tmp_path):
    settings = settings_for(tmp_path, backend="hf", replicas=2, model="/models/m",
                            balancer="sglang-router")
    fleet = build_server(settings, load_profile("all-minilm-l6-v2"))
    assert isinstance(fleet, Fleet) and len(fleet.replicas) == 2
    urls = [r.info.base_url for r in fleet.replicas]
    assert len(set(urls)) == 2
    router = fleet.balancer.command
    assert router[1:3] == ["-m", "sglang_router.launch_router"]
    at = router.index("--worker-urls")
    assert router[at + 1:at + 3] == urls
    assert router[router.index("--host") + 1] == "127.0.0.1"
    assert router[router.index("--prometheus-host") + 1] == "127.0.0.1"
    assert {"--disable-retries", "--disable-circuit-breaker"} <= set(router)
    for r in fleet.replicas:
        assert r.command[r.command.index("--host") + 1] == "127.0.0.1"
        assert r.command[r.command.index("--port") + 1] == r.info.base_url.rsplit(":", 1)[1]
    logs = {r.info.log_path.name for r in fleet.replicas} | {fleet.balancer.info.log_path.name}
    assert len(logs) == 3 and any(name.endswith("-replica-2-of-2.log") for name in logs)
    assert fleet.info.base_url == fleet.balancer.info.base_url


@pytest.mark.skipif(NGINX_MISSING, reason="nginx is not installed")
def test_nginx_balancer_config_is_loopback_round_robin_without_retries(tmp_path):
    settings = settings_for(tmp_path, backend="hf", replicas=3, model="/models/m")
    fleet = build_server(settings, load_profile("all-minilm-l6-v2"))
    (conf_path, conf), = fleet.balancer.secret_files.items()
    assert fleet.balancer.command[-2:] == ["-c", str(conf_path)]
    port = fleet.info.base_url.rsplit(":", 1)[1]
    assert f"listen 127.0.0.1:{port};" in conf
    for r in fleet.replicas:
        assert f"server {r.info.base_url.split('://')[1]} max_fails=0;" in conf
    assert "proxy_next_upstream off;" in conf and "daemon off;" in conf
    assert conf.count("server 127.0.0.1:") == 3


def test_replicas_of_an_external_server_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="already one URL"):
        settings_for(tmp_path, server_url="http://127.0.0.1:1", replicas=2)


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_replicas_must_be_a_positive_count(tmp_path, bad):
    with pytest.raises(ValueError, match="replicas"):
        settings_for(tmp_path, replicas=bad)


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None,
                    reason="the hf backend needs sentence-transformers")
def test_two_hf_replicas_behind_the_balancer_answer_like_one(tmp_path, balancer_kind):
    settings = settings_for(tmp_path, backend="hf", replicas=2, startup_timeout=240,
                            balancer=balancer_kind)
    profile = load_profile("all-minilm-l6-v2")
    fleet = build_server(settings, profile)
    texts = ["a cat sat on the mat", "replicas answer alike", "third text"]
    with fleet as info:
        body = {"model": info.served_name, "input": texts}
        through = [httpx.post(info.base_url + "/v1/embeddings", json=body, timeout=30).json()
                   for _ in range(4)]  # round robin: both replicas answer twice
        direct = [httpx.post(r.info.base_url + "/v1/embeddings", json=body, timeout=30).json()
                  for r in fleet.replicas]
        pids = info.pids_at_ready
    vectors = [[d["embedding"] for d in a["data"]] for a in through + direct]
    first = vectors[0]
    for other in vectors[1:]:
        for u, v in zip(first, other):
            assert max(abs(a - b) for a, b in zip(u, v)) < 1e-6
    assert all(gone(pid) for pid in pids)


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None or NGINX_MISSING,
                    reason="needs the hf backend (sentence-transformers) and nginx")
def test_retrieval_through_two_replicas_scores_as_through_one(tmp_path):
    """The crosslingual retrieval set encoded with its batches spread over both replicas
    (EmbeddingClient extra_urls) scores exactly as through one replica, with each ranking."""
    from embedgate.quality.scoring import CachingEncoder, evaluate_task
    from embedgate.quality.tasks import builtin_tasks
    from embedgate.serve.client import EmbeddingClient

    task = next(t for t in builtin_tasks() if t.name == "crosslingual_retrieval")
    profile = load_profile("all-minilm-l6-v2")
    settings = settings_for(tmp_path, backend="hf", replicas=2, startup_timeout=240)
    results, sent = {}, {}
    with build_server(settings, profile) as info:
        replicas = [m["base_url"] for m in info.members if m["role"].startswith("replica")]
        for name, urls in (("one", replicas[:1]), ("two", replicas)):
            with EmbeddingClient(urls[0], info.served_name, extra_urls=urls[1:],
                                 batch_size=16) as client:
                assert client.urls == urls
                encoder = CachingEncoder(client.embed)
                for ranking in ("dense", "faiss", "chunked"):
                    results[name, ranking] = evaluate_task(task, encoder, profile,
                                                           n_resamples=100, ranking=ranking)
                sent[name] = encoder.texts_encoded
        logs = [m["log_path"] for m in info.members if m["role"].startswith("replica")]
        posts = [Path(log).read_text().count("POST /v1/embeddings") for log in logs]
    assert sent["one"] == sent["two"] > 100
    n_batches = -(-sent["two"] // 16)
    assert posts[1] >= n_batches // 2  # replica 2 served its half of the spread run
    base = results["one", "dense"]
    assert base.score > 0
    for key, result in results.items():
        assert result.metrics == pytest.approx(base.metrics, abs=1e-9), key
        assert result.items["top10"] == base.items["top10"], key


def test_topology_and_corpus_options_check_their_values(tmp_path):
    from embedgate.config import settings as kit_settings
    from embedgate.quality import ranking
    from embedgate.serve import fleet
    assert kit_settings.RANKINGS == ranking.RANKINGS and kit_settings.BALANCERS == fleet.BALANCERS
    with pytest.raises(ValueError, match="needs --embedgate-replicas above 1"):
        settings_for(tmp_path, encode_urls="replicas")
    with pytest.raises(ValueError, match="must be `replicas` or start with http"):
        settings_for(tmp_path, encode_urls="fleet.internal:8000")
    with pytest.raises(ValueError, match="ranking"):
        settings_for(tmp_path, ranking="annoy")
    with pytest.raises(ValueError, match="balancer"):
        settings_for(tmp_path, balancer="haproxy", replicas=2)
    ok = settings_for(tmp_path, replicas=3, encode_urls="replicas", ranking="faiss",
                      data_parallel=2, tensor_parallel=4)
    assert (ok.replicas, ok.encode_urls, ok.ranking) == (3, ("replicas",), "faiss")
    assert (ok.data_parallel, ok.tensor_parallel) == (2, 4)


def test_encode_urls_resolve_replicas_to_their_own_urls():
    from embedgate.plugin import encode_urls
    info = ServerInfo(backend="hf", base_url="http://127.0.0.1:9000", served_name="m", model="m",
                      members=[{"role": "replica 1 of 2", "base_url": "http://127.0.0.1:9001"},
                               {"role": "replica 2 of 2", "base_url": "http://127.0.0.1:9002"},
                               {"role": "balancer", "base_url": "http://127.0.0.1:9000"}])
    assert encode_urls(info, ()) == ["http://127.0.0.1:9000"]
    assert encode_urls(info, ("replicas",)) == ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]
    assert encode_urls(info, ("http://a:1", "replicas")) == ["http://a:1", "http://127.0.0.1:9001",
                                                             "http://127.0.0.1:9002"]


def test_gpu_replicas_each_get_their_own_devices():
    from embedgate.serve.gpu import replica_gpus
    visible = ["0", "1", "2", "3", "4", "5", "6", "7"]
    assert [replica_gpus(i, 8, 1, visible) for i in (1, 8)] == ["0", "7"]
    assert [replica_gpus(i, 2, 4, visible) for i in (1, 2)] == ["0,1,2,3", "4,5,6,7"]
    assert replica_gpus(2, 2, 1, ["GPU-a", "GPU-b"]) == "GPU-b"  # ids as the user listed them
    with pytest.raises(ValueError, match="3 replicas x 4 GPU\\(s\\) each need 12 GPUs; 8 visible"):
        replica_gpus(1, 3, 4, visible)


def test_build_server_gives_cuda_replicas_their_own_gpus(tmp_path, monkeypatch):
    from embedgate.serve import launch
    monkeypatch.setattr(launch, "cuda_visible", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    settings = settings_for(tmp_path, backend="vllm", replicas=2, tensor_parallel=2,
                            model="/models/m", balancer="sglang-router")
    fleet = build_server(settings, load_profile("all-minilm-l6-v2"))
    assert [r.env["CUDA_VISIBLE_DEVICES"] for r in fleet.replicas] == ["4,5", "6,7"]
    for r in fleet.replicas:
        assert r.command[r.command.index("--tensor-parallel-size") + 1] == "2"


def test_fleet_interrupted_during_startup_stops_every_replica_at_once(tmp_path, balancer_kind):
    import os
    import signal
    import threading
    never = [sys.executable, "-c", "import time; time.sleep(600)"]
    replicas = [replica(tmp_path, i, 2, never) for i in (1, 2)]
    for r in replicas:
        r.startup_timeout = 300
    fleet = fleet_of(tmp_path, replicas, balancer_kind)
    # Python's own Ctrl-C handler, also where the shell started pytest with SIGINT ignored (a
    # background job of a non-interactive shell, as a CI script may be)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    ctrl_c = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    ctrl_c.start()
    try:
        # the replicas never get ready: only the interrupt (not the 300 s readiness timeout,
        # which raises another error) ends start()
        with pytest.raises(KeyboardInterrupt):
            fleet.start()
    finally:
        ctrl_c.cancel()
        signal.signal(signal.SIGINT, previous)
    assert all(r.info.pid and gone(r.info.pid) for r in replicas)
    assert fleet.survivors() == []


def test_perf_memory_sums_every_member_of_a_topology():
    import subprocess
    from embedgate.perf.memory import ProcessTreeMemory
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
             for _ in range(2)]
    try:
        one = ProcessTreeMemory(procs[0].pid)
        both = ProcessTreeMemory(procs[0].pid, extra_roots=(procs[1].pid,))
        assert sorted(both.pids()) == sorted(p.pid for p in procs)
        assert both.rss() > one.rss() > 0
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)
