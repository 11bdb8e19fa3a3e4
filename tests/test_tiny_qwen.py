"""Tests for embedgate.models.tiny_qwen: the offline tiny Qwen3 embedding checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from embedgate.models import tiny_qwen  # noqa: E402

EOS = "<|endoftext|>"
TEXTS = ["hello world", "你好", "A somewhat longer sentence, so that a batch needs left padding."]


def _need_tokenizer_package():
    try:
        return tiny_qwen.tokenizer_source_dir()
    except RuntimeError as exc:
        pytest.skip(str(exc))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    _need_tokenizer_package()
    cache = tmp_path_factory.mktemp("cache_a")
    return cache, Path(tiny_qwen.build(cache))


def _fake_writer(dst: Path, src: Path, fp: str) -> None:
    (dst / "stub.txt").write_text(fp)


# --- build, cache and determinism -------------------------------------------------------

def test_layout_and_name(built):
    cache, model_dir = built
    assert model_dir.parent == cache / "models"
    assert model_dir.name == f"tiny-qwen3-{tiny_qwen.fingerprint()}"
    assert (model_dir / ".complete").read_text().strip() == tiny_qwen.fingerprint()
    for name in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "modules.json", "sentence_bert_config.json", "1_Pooling/config.json",
                 "config_sentence_transformers.json", "README.md"]:
        assert (model_dir / name).is_file(), name
    assert "random" in (model_dir / "README.md").read_text().lower()
    assert "embedgate.models.tiny_qwen" in (model_dir / "README.md").read_text()
    size = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())
    assert size < 60 * 2**20
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(".tmp-")]


def test_two_builds_are_byte_identical(built, tmp_path):
    torch = pytest.importorskip("torch")
    _, first = built
    torch.manual_seed(999)  # the build must not depend on the caller's RNG state
    torch.rand(7)
    second = Path(tiny_qwen.build(tmp_path / "cache_b"))
    assert second.name == first.name
    assert _sha256(second / "model.safetensors") == _sha256(first / "model.safetensors")
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json"]:
        assert (second / name).read_bytes() == (first / name).read_bytes(), name


def test_rebuild_is_a_cache_hit(built, monkeypatch):
    cache, model_dir = built
    mtime = (model_dir / "model.safetensors").stat().st_mtime_ns

    def boom(*args):
        raise AssertionError("build() rebuilt a complete model dir")

    monkeypatch.setattr(tiny_qwen, "_write_model", boom)
    assert tiny_qwen.build(cache) == str(model_dir)
    assert tiny_qwen.build(str(cache)) == str(model_dir)
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == mtime


def test_build_does_not_touch_global_rng(built, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    tiny_qwen.build(built[0])  # cache hit: must not reseed
    tiny_qwen._write_model(_mkdir(tmp_path / "w"), tiny_qwen.tokenizer_source_dir(), "x")
    assert torch.equal(torch.rand(3), expected)


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True)
    return p


def test_incomplete_dir_is_replaced_and_crash_leaves_nothing(tmp_path, monkeypatch):
    _need_tokenizer_package()
    monkeypatch.setattr(tiny_qwen, "_write_model", _fake_writer)
    final = tmp_path / "models" / f"tiny-qwen3-{tiny_qwen.fingerprint()}"
    final.mkdir(parents=True)
    (final / "half-written").write_text("x")  # no .complete marker: a crashed earlier build
    assert tiny_qwen.build(tmp_path) == str(final)
    assert sorted(p.name for p in final.iterdir()) == [".complete", "stub.txt"]

    def crash(dst, src, fp):
        (dst / "partial").write_text("x")
        raise KeyboardInterrupt

    other = tmp_path / "other"
    monkeypatch.setattr(tiny_qwen, "_write_model", crash)
    with pytest.raises(KeyboardInterrupt):
        tiny_qwen.build(other)
    assert list((other / "models").iterdir()) == []


def test_cache_dir_defaults(tmp_path, monkeypatch):
    _need_tokenizer_package()
    monkeypatch.setattr(tiny_qwen, "_write_model", _fake_writer)
    monkeypatch.setenv("EMBEDGATE_CACHE_DIR", str(tmp_path / "env"))
    assert Path(tiny_qwen.build()).parent == tmp_path / "env" / "models"
    monkeypatch.delenv("EMBEDGATE_CACHE_DIR")
    monkeypatch.chdir(tmp_path)
    assert Path(tiny_qwen.build()).parent == tmp_path / ".embedgate_cache" / "models"


def test_fingerprint_tracks_recipe(monkeypatch):
    src = _need_tokenizer_package()
    fp = tiny_qwen.fingerprint(src)
    assert len(fp) == 12 and fp == tiny_qwen.fingerprint(src)
    monkeypatch.setattr(tiny_qwen, "RECIPE_VERSION", tiny_qwen.RECIPE_VERSION + "-next")
    assert tiny_qwen.fingerprint(src) != fp
    monkeypatch.undo()
    monkeypatch.setitem(tiny_qwen.MODEL_CONFIG, "num_hidden_layers", 3)
    assert tiny_qwen.fingerprint(src) != fp


# --- tokenizer ----------------------------------------------------------------------------

def test_tokenizer_appends_eos_and_pads_left(built):
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    model_dir = built[1]
    raw = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    eos_id = raw.token_to_id(EOS)
    assert eos_id == 151643
    assert raw.encode("hello").ids == [14990, eos_id]

    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    assert tok("hello").input_ids == [14990, eos_id]
    assert tok("hello", add_special_tokens=False).input_ids == [14990]
    assert tok("a", "b").input_ids[-1] == eos_id
    assert tok.padding_side == "left"
    assert tok.pad_token == EOS and tok.pad_token_id == eos_id
    batch = tok(["hello", "hello world again"], padding=True)
    short, long_ = batch.input_ids
    assert len(short) == len(long_) and short[-2:] == [14990, eos_id] and long_[-1] == eos_id
    assert batch.attention_mask[0][0] == 0 and batch.attention_mask[0][-1] == 1


# --- model and sentence-transformers -----------------------------------------------------

def test_config_fields(built):
    cfg = json.loads((built[1] / "config.json").read_text())
    assert cfg["matryoshka_dimensions"] == [16, 32, 64]
    assert cfg["is_matryoshka"] is True
    assert cfg["head_dim"] >= 32
    assert cfg["architectures"] == ["Qwen3ForCausalLM"]
    assert cfg["model_type"] == "qwen3"
    assert cfg["hidden_size"] == 64 and cfg["num_hidden_layers"] == 2
    assert cfg["tie_word_embeddings"] is True
    assert cfg["vocab_size"] % 64 == 0 and 151669 <= cfg["vocab_size"] < 151669 + 64
    assert cfg["torch_dtype"] == "float32"
    assert cfg.get("pad_token_id") is None  # else the pooled EOS row would be zeroed at init


def test_weights_are_tied_float32(built):
    safetensors = pytest.importorskip("safetensors")
    with safetensors.safe_open(str(built[1] / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        emb = f.get_tensor("model.embed_tokens.weight")
    assert "lm_head.weight" not in keys
    assert tuple(emb.shape) == (151680, 64) and str(emb.dtype) == "torch.float32"
    assert float(emb[151643].abs().sum()) > 0


def test_sentence_transformers_matches_manual_last_token(built):
    st = pytest.importorskip("sentence_transformers")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model_dir = str(built[1])
    model = st.SentenceTransformer(model_dir, device="cpu")
    dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    assert dim() == 64
    assert model.max_seq_length == 512
    assert model.prompts["query"].startswith("Instruct: Given a web search query")
    got = model.encode(TEXTS, convert_to_numpy=True, batch_size=len(TEXTS))  # one left-padded batch
    assert got.shape == (3, 64)
    assert abs((got ** 2).sum(axis=1) - 1).max() < 1e-5

    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    base = transformers.AutoModel.from_pretrained(model_dir).eval()
    for text, vec in zip(TEXTS, got):
        with torch.no_grad():
            hidden = base(**tok([text], return_tensors="pt")).last_hidden_state[0, -1]
        want = torch.nn.functional.normalize(hidden, dim=-1).numpy()
        assert abs(want - vec).max() < 1e-5, text
    assert abs(got[0] - got[1]).max() > 1e-3  # different texts, different (noise) vectors
