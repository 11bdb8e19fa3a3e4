"""The in-process reference: what the served model should answer, computed here on CPU in fp32.

Why: a server can be self-consistent and still wrong (wrong pooling, dropped EOS, a bad kernel).
The api suite compares its answers with this reference, built from the model profile:
sentence-transformers when the model directory has ``modules.json`` (so Dense/Normalize modules
count), else plain transformers with the profile's pooling; the profile's normalisation and
instruction templates; and the model's own tokenizer for token counts.

The weights are found without downloading anything: a local path, the profile's packaged weights,
or the hub cache (the kit's and the default one). When none is there, `ReferenceUnavailable`
says where it looked, and the checks that need the reference skip with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from embedgate.models.loading import l2_normalize, load_model, pooled_forward, st_pooling_mismatch
from embedgate.models.profiles import ModelProfile

FILLER = ("The river bank was quiet at dawn. Der Fluss fließt langsam durch die Stadt. "
          "银行在河边开了一家新的分行。 La banque est fermée le dimanche. "
          "川沿いの銀行は朝九時に開く。 Банк на берегу реки открылся утром. "
          "El banco abre a las nueve. ")


class ReferenceUnavailable(RuntimeError):
    """No local copy of the model's weights or tokenizer; the message lists where it looked."""


class ReferenceMismatch(RuntimeError):
    """The model files disagree with the profile (pooling, normalisation): fix the profile."""


def _hub_snapshot(repo_id: str, cache_dirs: Sequence[Path | None]) -> tuple[str | None, list[str]]:
    """A local snapshot of repo_id from the first cache that has one; never downloads."""
    tried = []
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None, ["huggingface_hub is not installed"]
    for cache in cache_dirs:
        where = str(cache) if cache else "the default hub cache"
        try:
            return snapshot_download(repo_id, cache_dir=cache, local_files_only=True), tried
        except Exception as exc:  # noqa: BLE001 - any failure means "not cached here"
            tried.append(f"{repo_id} in {where} ({type(exc).__name__})")
    return None, tried


def resolve_model_dir(profile: ModelProfile, *, server_model: str | None,
                      cli_model: str | None, cache_dir: Path) -> str:
    """The local directory of the model the server runs.

    Tried in order: the server's model when it is a directory, --embedgate-model, the profile's packaged
    weights, then the hub id (server model, --embedgate-model, profile hf_id) in the kit's hub cache and
    the default one.
    """
    tried: list[str] = []
    hub_ids: list[str] = []
    for name in (server_model, cli_model):
        if not name:
            continue
        path = Path(name).expanduser()
        if path.is_dir():
            return str(path)
        tried.append(f"{name} is not a local directory")
        if name.count("/") == 1 and not name.startswith((".", "/", "~")):
            hub_ids.append(name)
    packaged = None
    try:
        packaged = profile.local_model_path(cache_dir)
    except Exception as exc:  # noqa: BLE001 - e.g. the weights package is not installed
        tried.append(f"packaged weights: {exc}")
    if packaged and Path(packaged).is_dir():
        return packaged
    if profile.hf_id:
        hub_ids.append(profile.hf_id)
    for repo in dict.fromkeys(hub_ids):
        found, misses = _hub_snapshot(repo, [cache_dir / "hf" / "hub", None])
        if found:
            return found
        tried += misses
    raise ReferenceUnavailable(
        f"no local copy of the model for profile {profile.name!r}; tried: {'; '.join(tried)}. "
        f"Pass --embedgate-model PATH, or fetch it first (huggingface-cli download "
        f"{profile.hf_id or '<hub id>'}).")


def config_vocab_size(model_dir: str) -> int | None:
    """The model's embedding rows (config.json vocab_size), which may exceed the tokenizer's."""
    import json

    try:
        return int(json.loads((Path(model_dir) / "config.json").read_text())["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_tokenizer(model_dir: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@dataclass
class ReferenceTokenizer:
    """The model's tokenizer as the server should use it: special tokens in, no truncation."""

    tokenizer: Any
    max_tokens: int
    _special: tuple[int, ...] | None = field(default=None, repr=False)

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])

    def count(self, text: str) -> int:
        return len(self.ids(text))

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def appended(self) -> tuple[int, ...]:
        """The ids the tokenizer appends to every input (BERT's [SEP], Qwen3-Embedding's EOS)."""
        if self._special is None:
            probe = "reference probe"
            bare = list(self.tokenizer(probe, add_special_tokens=False)["input_ids"])
            full = self.ids(probe)
            start = next((i for i in range(len(full)) if full[i:i + len(bare)] == bare), None)
            self._special = tuple(full[start + len(bare):]) if start is not None else ()
        return self._special

    def text_with_tokens(self, n: int, filler: str = FILLER) -> str:
        """A text (cut from `filler`, repeated) that tokenizes to exactly n ids, specials included.

        Cut at token boundaries and re-counted, since a cut can merge or split the last token.
        """
        overhead = self.count("")
        if n <= overhead:
            raise ValueError(f"{n} tokens is no more than the {overhead} special tokens")
        text = filler
        while self.count(text) < n + 8:
            text += " " + filler
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ends = [end for _, end in enc["offset_mapping"]]
        want = n - overhead
        below = ""
        for m in range(max(1, want - 8), min(len(ends), want) + 1):
            candidate = text[:ends[m - 1]]
            count = self.count(candidate)
            if count == n:
                return candidate
            if count < n:
                below = candidate
        # A character split into several tokens can make n unreachable by cutting: top up
        # with one-token ASCII words instead.
        for _ in range(4):
            missing = n - self.count(below)
            if missing == 0:
                return below
            if missing < 0:
                break
            below += " a" * missing
        raise ValueError(f"could not build a text of exactly {n} tokens from the filler")


class ReferenceEncoder:
    """Embeds texts as the profile says the model does: pooling, normalisation.

    On CPU (the default) it runs in float32. device="cuda" is for models too big for that (a
    Qwen3-Embedding-8B is 32 GB in fp32); it then runs in the profile's dtype, which the
    dtype tolerance (1e-2 for bf16/fp16) allows for.
    """

    def __init__(self, model_dir: str, profile: ModelProfile, *, device: str = "cpu"):
        import torch

        self._torch = torch
        self.profile = profile
        self.model_dir = model_dir
        self.device = device
        dtype = torch.float32 if device == "cpu" else getattr(torch, profile.dtype)
        loaded = load_model(model_dir, max_tokens=profile.max_tokens, device=device, dtype=dtype)
        self._st, self._model, self._tok = loaded.st, loaded.model, loaded.tokenizer
        if self._st is not None:
            self._check_st_matches_profile()
        self.tokenizer = ReferenceTokenizer(self._tok, profile.max_tokens)

    def _check_st_matches_profile(self) -> None:
        mode = st_pooling_mismatch(self._st, self.profile.pooling)
        if mode is not None:
            raise ReferenceMismatch(
                f"{self.model_dir} pools with {mode!r} but profile {self.profile.name!r} "
                f"({self.profile.path}) says pooling = {self.profile.pooling!r}")

    def encode(self, texts: Sequence[str], *, dimensions: int | None = None) -> np.ndarray:
        """One text at a time (no padding to differ from the server's), float32 rows."""
        rows = [self._encode_one(t) for t in texts]
        out = np.stack(rows).astype(np.float64)
        if dimensions is not None:
            out = out[:, :dimensions]
        if self.profile.normalize:
            out = l2_normalize(out)
        return out.astype(np.float32)

    def _encode_one(self, text: str) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            if self._st is not None:
                # prompt="": never a default prompt from the model's ST config
                vec = self._st.encode([text], prompt="", convert_to_numpy=True,
                                      normalize_embeddings=False, show_progress_bar=False)[0]
                return np.asarray(vec, dtype=np.float32)
            feats = {k: v.to(self.device) for k, v in
                     self._tok([text], return_tensors="pt", truncation=False).items()}
            pooled = pooled_forward(self._model, feats, self.profile.pooling)
            return pooled[0].cpu().numpy().astype(np.float32)


def formatted(profile: ModelProfile, texts: Sequence[str], *, kind: str = "document",
              task: str = "") -> list[str]:
    """Texts with the profile's instruction template, as both the server and reference get them."""
    if kind == "query":
        return [profile.format_query(t, task=task) for t in texts]
    return [profile.format_document(t) for t in texts]
