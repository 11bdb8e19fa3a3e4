"""The api suite must fail against a broken server (standard: a check that cannot fail is a defect).

A stdlib stub speaks the OpenAI embeddings API with one named fault; the real tests_api suite runs
against it with --backend external. With no fault the suite passes.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from embedgate.server import EmbeddingServer, ServerInfo, free_port

SUITE = Path(__file__).resolve().parents[1] / "tests_api"
STUB = textwrap.dedent('''
    import hashlib, json, sys
    import numpy as np
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    port, fault = int(sys.argv[1]), sys.argv[2]
    NAME, DIM = "all-MiniLM-L6-v2", 384
    def vec(text):
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        v = np.random.default_rng(seed).standard_normal(DIM)
        return v / np.linalg.norm(v)
    class H(BaseHTTPRequestHandler):
        def send(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def do_GET(self):
            self.send(200, {"object": "list", "data": [{"id": NAME, "object": "model"}]})
        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            texts = [req["input"]] if isinstance(req["input"], str) else req["input"]
            if req.get("dimensions") is not None and fault != "ignore_dimensions":
                return self.send(400, {"error": {"message": "no matryoshka", "code": 400}})
            vecs = [vec(t) for t in texts]
            if fault == "shuffle_order":
                vecs = vecs[::-1]
            if fault == "nan":
                vecs[0] = vecs[0] * np.nan
            if fault == "wrong_dim":
                vecs = [v[:DIM - 1] for v in vecs]
            data = [{"object": "embedding", "index": i, "embedding": v.tolist()}
                    for i, v in enumerate(vecs)]
            n = sum(len(t.split()) + 2 for t in texts)
            self.send(200, {"object": "list", "data": data, "model": NAME,
                            "usage": {"prompt_tokens": n, "total_tokens": n}})
        def log_message(self, *a):
            pass
    ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
''')


@pytest.mark.parametrize("fault,caught_by", [
    ("none", None),
    ("shuffle_order", "test_embeddings_response_shape_order_and_usage"),
    ("nan", "test_embeddings_response_shape_order_and_usage"),
    ("wrong_dim", "test_embeddings_response_shape_order_and_usage"),
    ("ignore_dimensions", "test_dimensions_follow_the_profile"),
])
def test_api_suite_fails_on_each_fault(tmp_path, fault, caught_by):
    script = tmp_path / "stub.py"
    script.write_text(STUB)
    port = free_port()
    info = ServerInfo(backend="stub", base_url=f"http://127.0.0.1:{port}",
                      served_name="all-MiniLM-L6-v2", model="stub", log_path=tmp_path / "stub.log")
    with EmbeddingServer(info, [sys.executable, str(script), str(port), fault], {},
                         startup_timeout=30, poll_interval=0.1):
        result = subprocess.run(
            [sys.executable, "-m", "pytest", str(SUITE), "-m", "api", "-p", "no:cacheprovider",
             "--server-url", info.base_url, "--profile", "all-minilm-l6-v2",
             "--reports-dir", str(tmp_path / "reports"), "-rf"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    out = result.stdout
    if caught_by is None:
        assert result.returncode == 0, out[-3000:]
    else:
        assert result.returncode == 1, out[-3000:]
        failed = [line for line in out.splitlines() if line.startswith("FAILED ")]
        assert any(line.split(" ")[1].endswith(f"test_contract_basic.py::{caught_by}")
                   for line in failed), out[-3000:]
