"""embedgate.api.faults and .proxy (issue 4): the proxy forwards faithfully, and each fault does
what it says.

A small stdlib fake stands in for the upstream server here, so that every transform can be
checked exactly; tests/test_api_suite_catches_faults.py runs the faults against a real server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest

from embedgate.api.faults import FAULT_MARGIN, FAULTS, fault_names, resolve_fault
from embedgate.api import faults as faults_module
from embedgate.api import proxy as proxy_module
from embedgate.api.proxy import FaultProxy, main

NAME, DIM, DIMS = "fake", 8, (4, 8)
ISSUE_FAULTS = {"nan", "wrong_dim", "shuffle_order", "drop_item", "ignore_dimensions",
                "unnormalized", "silent_truncation", "batch_dependent_noise", "base64_byteswap",
                "flaky_5xx"}


def unit(key: str, dim: int = DIM) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    vec = np.random.default_rng(seed).standard_normal(DIM)[:dim]
    return (vec / np.linalg.norm(vec)).astype(np.float32)


class Upstream(BaseHTTPRequestHandler):
    """A correct, deterministic OpenAI embeddings server that remembers what it was sent."""

    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        Upstream.seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
        if self.path == "/health":
            return self.reply(200, {"status": "ok"})
        if self.path == "/v1/models":
            return self.reply(200, {"object": "list", "data": [{"id": NAME, "object": "model"}]})
        return self.reply(404, {"error": {"message": "no such path", "code": 404}})

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Upstream.seen.append({"path": self.path, "body": req,
                              "auth": self.headers.get("Authorization")})
        if req.get("model") not in (None, NAME):
            return self.reply(404, {"error": {"message": "unknown model", "code": 404}})
        inp = req.get("input")
        items = [inp] if isinstance(inp, str) or (inp and isinstance(inp[0], int)) else inp
        dim = req.get("dimensions")
        if not items or (dim is not None and dim not in DIMS):
            return self.reply(400, {"error": {"message": "bad request", "code": 400}})
        data = []
        for i, item in enumerate(items):
            vec = unit(json.dumps(item), dim or DIM)
            emb = (base64.b64encode(vec.astype("<f4").tobytes()).decode()
                   if req.get("encoding_format") == "base64" else vec.tolist())
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(len(i) if isinstance(i, list) else len(i.split()) + 2 for i in items)
        self.reply(200, {"object": "list", "data": data, "model": NAME,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


@pytest.fixture(scope="module")
def upstream_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def post(proxy, body, **headers):
    return httpx.post(proxy.url + "/v1/embeddings", json=body, headers=headers, timeout=10)


def vectors(response, b64=False):
    rows = [d["embedding"] for d in response.json()["data"]]
    if b64:
        return np.stack([np.frombuffer(base64.b64decode(r), "<f4") for r in rows])
    return np.array(rows, dtype=np.float64)


TEXTS = ["alpha", "beta gamma", "delta"]
CLEAN = np.stack([unit(json.dumps(t)) for t in TEXTS])


def test_faults_registry_holds_every_fault_the_issue_names():
    assert ISSUE_FAULTS | {"delay"} <= set(FAULTS)
    assert all(f.description for f in FAULTS.values())


def test_faults_proxy_without_fault_forwards_every_path_and_header(upstream_url):
    """Readiness probes and auth must pass through untouched, so --embedgate-server-url just works."""
    with FaultProxy(upstream_url) as proxy:
        assert httpx.get(proxy.url + "/health").json() == {"status": "ok"}
        assert httpx.get(proxy.url + "/v1/models").json()["data"][0]["id"] == NAME
        assert httpx.get(proxy.url + "/nope").status_code == 404
        direct = httpx.post(upstream_url + "/v1/embeddings", json={"input": TEXTS})
        proxied = post(proxy, {"input": TEXTS}, Authorization="Bearer sk-secret")
        assert proxied.status_code == 200 and proxied.content == direct.content
        assert Upstream.seen[-1]["auth"] == "Bearer sk-secret"
        assert proxy.state.requests == 0  # no fault: nothing counted, nothing parsed


def test_faults_proxy_never_logs_the_api_key(upstream_url, capfd):
    with FaultProxy(upstream_url, "nan", verbose=True) as proxy:
        post(proxy, {"input": TEXTS}, Authorization="Bearer sk-very-secret")
        httpx.get(proxy.url + "/v1/models", headers={"Authorization": "Bearer sk-very-secret"})
    out, err = capfd.readouterr()
    assert "POST /v1/embeddings" in err and "sk-very-secret" not in out + err


def test_faults_proxy_answers_without_nagle_delay(upstream_url, monkeypatch):
    """Headers and body go out in two writes; without TCP_NODELAY each request stalls ~40 ms
    on the peer's delayed ACK. The option is checked on the proxy's own accepted sockets; the
    latency itself is the perf suite's business."""
    seen = []
    setup = proxy_module._Handler.setup

    def recording_setup(handler):
        setup(handler)
        seen.append(handler.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(proxy_module._Handler, "setup", recording_setup)
    with FaultProxy(upstream_url, "usage_miscount") as proxy:
        assert post(proxy, {"input": TEXTS}).status_code == 200
    assert seen and all(seen)


@pytest.mark.parametrize("fmt", ["float", "base64"])
def test_faults_nan_poisons_the_first_value(upstream_url, fmt):
    with FaultProxy(upstream_url, "nan") as proxy:
        got = vectors(post(proxy, {"input": TEXTS, "encoding_format": fmt}), fmt == "base64")
    assert np.isnan(got[0, 0]) and np.isfinite(got[0, 1:]).all() and np.isfinite(got[1:]).all()


def test_faults_wrong_dim_drops_the_last_value(upstream_url):
    with FaultProxy(upstream_url, "wrong_dim") as proxy:
        got = vectors(post(proxy, {"input": TEXTS}))
    np.testing.assert_allclose(got, CLEAN[:, :-1], atol=1e-6)


def test_faults_shuffle_order_rotates_vectors_but_keeps_indices(upstream_url):
    with FaultProxy(upstream_url, "shuffle_order") as proxy:
        response = post(proxy, {"input": TEXTS})
        single = vectors(post(proxy, {"input": TEXTS[:1]}))
    assert [d["index"] for d in response.json()["data"]] == [0, 1, 2]
    np.testing.assert_allclose(vectors(response), np.roll(CLEAN, -1, axis=0), atol=1e-6)
    np.testing.assert_allclose(single, CLEAN[:1], atol=1e-6)  # one item: nothing to reorder


def test_faults_drop_item_drops_the_last_of_a_batch(upstream_url):
    with FaultProxy(upstream_url, "drop_item") as proxy:
        assert len(post(proxy, {"input": TEXTS}).json()["data"]) == 2
        assert len(post(proxy, {"input": TEXTS[:1]}).json()["data"]) == 1


def test_faults_ignore_dimensions_strips_the_field(upstream_url):
    with FaultProxy(upstream_url, "ignore_dimensions") as proxy:
        response = post(proxy, {"input": TEXTS, "dimensions": 3})  # upstream would refuse 3
    assert response.status_code == 200 and vectors(response).shape == (3, DIM)
    assert "dimensions" not in Upstream.seen[-1]["body"]


def test_faults_unnormalized_scales_every_vector(upstream_url):
    with FaultProxy(upstream_url, "unnormalized", scale=2.0) as proxy:
        got = vectors(post(proxy, {"input": TEXTS}))
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 2.0, rtol=1e-6)


def test_faults_silent_truncation_cuts_long_inputs_only(upstream_url):
    long_text, long_ids = "x" * 50, list(range(30))
    with FaultProxy(upstream_url, "silent_truncation", keep_chars=10, keep_ids=5) as proxy:
        post(proxy, {"input": ["short", long_text]})
        assert Upstream.seen[-1]["body"]["input"] == ["short", "x" * 10]
        post(proxy, {"input": long_ids})
        assert Upstream.seen[-1]["body"]["input"] == long_ids[:5]
        post(proxy, {"input": "tiny"})
        assert Upstream.seen[-1]["body"]["input"] == "tiny"
        assert proxy.state.applied == 2


def test_faults_batch_dependent_noise_spares_singles_and_keeps_norms(upstream_url):
    with FaultProxy(upstream_url, "batch_dependent_noise") as proxy:
        batch = vectors(post(proxy, {"input": TEXTS}))
        again = vectors(post(proxy, {"input": TEXTS}))
        single = vectors(post(proxy, {"input": TEXTS[:1]}))
    gap = 1 - np.sum(batch * CLEAN, axis=1)
    assert np.all(gap > 1e-5) and np.all(gap < 1e-3)  # visible at fp32 tolerance, yet small
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(batch, again)  # deterministic: the same batch, the same noise
    np.testing.assert_allclose(single, CLEAN[:1], atol=1e-6)


# The tolerances the profiles use: float32 1e-5, bfloat16/float16 1e-2.
TOLERANCES = (1e-5, 1e-2)
SIZED_TO_TOLERANCE = {"batch_dependent_noise", "nondeterministic", "parity_drift",
                      "unnormalized"}


def cos_gap(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return 1 - np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_faults_only_the_perturbations_depend_on_the_tolerance():
    """Every other fault breaks answers structurally (NaN, a lost item, a wrong status): the
    same parameters at every tolerance, so the kill-rate proof at 1e-5 holds for them at 1e-2
    too; the proof at 1e-2 runs the perturbations (tests/test_api_suite_catches_faults.py)."""
    differ = {name for name in FAULTS
              if resolve_fault(name, {}, tolerance=1e-5)[1]
              != resolve_fault(name, {}, tolerance=1e-2)[1]}
    assert differ == SIZED_TO_TOLERANCE
    assert {f.name for f in FAULTS.values() if f.scaled} == SIZED_TO_TOLERANCE


@pytest.mark.parametrize("tolerance", TOLERANCES)
def test_faults_perturbations_land_five_tolerances_past_the_bound(upstream_url, tolerance):
    want = FAULT_MARGIN * tolerance
    with FaultProxy(upstream_url, "batch_dependent_noise", tolerance=tolerance) as proxy:
        batch = vectors(post(proxy, {"input": TEXTS}))
        single = vectors(post(proxy, {"input": TEXTS[:1]}))
    np.testing.assert_allclose(cos_gap(batch, CLEAN), want, rtol=0.01)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-6)
    assert cos_gap(single, CLEAN[:1])[0] < 1e-6
    with FaultProxy(upstream_url, "parity_drift", tolerance=tolerance) as proxy:
        drifted = vectors(post(proxy, {"input": TEXTS}))
    np.testing.assert_allclose(cos_gap(drifted, CLEAN), want, rtol=0.01)
    with FaultProxy(upstream_url, "nondeterministic", tolerance=tolerance) as proxy:
        first, second = (vectors(post(proxy, {"input": TEXTS})) for _ in range(2))
    np.testing.assert_allclose(cos_gap(first, CLEAN), want, rtol=0.01)
    assert np.all(cos_gap(first, second) > 2 * tolerance)  # two independent moves
    with FaultProxy(upstream_url, "unnormalized", tolerance=tolerance) as proxy:
        scaled = vectors(post(proxy, {"input": TEXTS}))
    np.testing.assert_allclose(np.linalg.norm(scaled, axis=1) - 1, want, rtol=0.01)


def test_faults_tolerance_outside_any_dtype_is_refused():
    with pytest.raises(ValueError, match="tolerance 0.5 must be in"):
        resolve_fault("parity_drift", {}, tolerance=0.5)


def test_faults_base64_byteswap_writes_big_endian(upstream_url):
    with FaultProxy(upstream_url, "base64_byteswap") as proxy:
        response = post(proxy, {"input": TEXTS, "encoding_format": "base64"})
        floats = vectors(post(proxy, {"input": TEXTS}))
    raw = base64.b64decode(response.json()["data"][0]["embedding"])
    np.testing.assert_allclose(np.frombuffer(raw, ">f4"), CLEAN[0], atol=1e-6)
    np.testing.assert_allclose(floats, CLEAN, atol=1e-6)  # float answers are untouched


def test_faults_flaky_5xx_fails_every_nth_request(upstream_url):
    with FaultProxy(upstream_url, "flaky_5xx", every=3) as proxy:
        codes = [post(proxy, {"input": TEXTS}).status_code for _ in range(9)]
    assert codes == [200, 200, 503] * 3


def test_faults_delay_waits_before_forwarding(upstream_url, monkeypatch):
    waits = []
    monkeypatch.setattr(faults_module, "time", types.SimpleNamespace(sleep=waits.append))
    with FaultProxy(upstream_url, "delay", ms=150) as proxy:
        assert post(proxy, {"input": TEXTS}).status_code == 200
    assert waits == [0.15] and proxy.state.applied == 1


def test_faults_usage_miscount_adds_one_token(upstream_url):
    with FaultProxy(upstream_url, "usage_miscount") as proxy:
        usage = post(proxy, {"input": TEXTS}).json()["usage"]
    assert usage == {"prompt_tokens": 11, "total_tokens": 11}  # 10 + 1


def test_faults_accept_any_model_rewrites_unknown_names(upstream_url):
    with FaultProxy(upstream_url, "accept_any_model") as proxy:
        assert post(proxy, {"model": "nope", "input": TEXTS}).status_code == 200
    assert Upstream.seen[-1]["body"]["model"] == NAME


@pytest.mark.parametrize("fault,status", [("errors_as_500", 500), ("errors_as_200", 200)])
def test_faults_errors_change_status_but_not_successes(upstream_url, fault, status):
    with FaultProxy(upstream_url, fault) as proxy:
        assert post(proxy, {"input": []}).status_code == status
        assert post(proxy, {"input": TEXTS}).status_code == 200


def test_faults_fastapi_errors_refuse_with_422_and_a_detail_list(upstream_url):
    """FastAPI's default validation body: still a refusal, not the OpenAI error shape."""
    with FaultProxy(upstream_url, "fastapi_errors") as proxy:
        refused = post(proxy, {"input": []})
        assert post(proxy, {"input": TEXTS}).status_code == 200
    assert refused.status_code == 422
    assert refused.json() == {"detail": [{"type": "value_error", "loc": ["body"],
                                          "msg": "bad request", "input": None}]}


def test_faults_parity_drift_is_consistent_but_off(upstream_url):
    with FaultProxy(upstream_url, "parity_drift") as proxy:
        batch = vectors(post(proxy, {"input": TEXTS}))
        single = vectors(post(proxy, {"input": TEXTS[1:2]}))
    np.testing.assert_allclose(batch[1:2], single, atol=1e-6)  # batching cannot reveal it
    assert np.all(1 - np.sum(batch * CLEAN, axis=1) > 1e-5)


def test_faults_nondeterministic_changes_every_repeat(upstream_url):
    with FaultProxy(upstream_url, "nondeterministic") as proxy:
        first, second = (vectors(post(proxy, {"input": TEXTS})) for _ in range(2))
    assert np.all(1 - np.sum(first * second, axis=1) > 1e-5)


def test_faults_eos_on_token_ids_appends_only_where_missing(upstream_url):
    with FaultProxy(upstream_url, "eos_on_token_ids", eos_id=9) as proxy:
        post(proxy, {"input": [[1, 2], [3, 9]]})
        assert Upstream.seen[-1]["body"]["input"] == [[1, 2, 9], [3, 9]]
        post(proxy, {"input": "text"})
        assert Upstream.seen[-1]["body"]["input"] == "text"


def test_faults_are_deterministic_across_proxies(upstream_url):
    answers = []
    for _ in range(2):
        with FaultProxy(upstream_url, "nondeterministic", seed=3) as proxy:
            answers.append([post(proxy, {"input": TEXTS}).content for _ in range(3)])
    assert answers[0] == answers[1]


def test_faults_unknown_fault_or_parameter_is_refused():
    with pytest.raises(ValueError, match="unknown fault 'nope'.*nan"):
        resolve_fault("nope", {})
    with pytest.raises(ValueError, match="takes parameters.*every.*not \\['often'\\]"):
        resolve_fault("flaky_5xx", {"often": 2})
    with pytest.raises(ValueError, match="every='x' is not of type int"):
        resolve_fault("flaky_5xx", {"every": "x"})
    with pytest.raises(ValueError, match="takes no parameters"):
        FaultProxy("http://127.0.0.1:1", "none", scale=2)


def test_faults_cli_lists_every_fault(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and all(name in out for name in fault_names())


def test_faults_cli_serves_a_proxy_by_hand(upstream_url):
    proc = subprocess.Popen([sys.executable, "-m", "embedgate.api.proxy", "--upstream", upstream_url,
                             "--fault", "unnormalized", "--param", "scale=3"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "fault=unnormalized" in line and "'scale': 3.0" in line
        url = line.split()[2]
        got = httpx.post(url + "/v1/embeddings", json={"input": TEXTS}, timeout=10).json()
        assert np.allclose(np.linalg.norm(np.array([d["embedding"] for d in got["data"]]),
                                          axis=1), 3.0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
