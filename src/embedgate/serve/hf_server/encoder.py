"""The `hf` backend's encoder: one model in this process, batched, on CPU or CUDA."""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import numpy as np

from embedgate.models.loading import load_model, pooled_forward, st_pooling_mismatch

log = logging.getLogger("embedgate.serve.hf_server")


class HFEncoder:
    """Loads the model once; callers serialise access (the server holds a lock).

    sentence-transformers dirs pool and normalise per their own modules, so
    --pooling is only used on the plain transformers path (a mismatch is logged).
    """

    def __init__(self, model: str, *, pooling: str = "mean", normalize: bool = True,
                 max_tokens: int = 512, dtype: Optional[str] = None,
                 device: str = "auto", batch_size: int = 32) -> None:
        import torch

        self._torch = torch
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device, self.pooling, self.normalize = device, pooling, normalize
        self.max_tokens, self.batch_size = max_tokens, batch_size
        loaded = load_model(model, max_tokens=max_tokens, device=device,
                            dtype=getattr(torch, dtype) if dtype else None)
        self._st, self._hf_model, self.tokenizer = loaded.st, loaded.model, loaded.tokenizer
        mode = st_pooling_mismatch(self._st, pooling) if self._st is not None else None
        if mode is not None:
            log.warning("--pooling %s ignored: the model's own Pooling uses %r", pooling, mode)
        limit = getattr(getattr(self._hf_model, "config", None), "max_position_embeddings", None)
        if limit and max_tokens > limit:
            log.warning("--max-tokens %d exceeds max_position_embeddings %d", max_tokens, limit)
        self._dim = int(self.encode_texts(["dimension probe"]).shape[1])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def vocab_size(self) -> Optional[int]:
        """Lets the server reject out-of-range token ids with a 400, not a crash."""
        return getattr(getattr(self._hf_model, "config", None), "vocab_size", None)

    def tokenize_count(self, texts: Sequence[str]) -> list[int]:
        """Token count per text, special tokens included, never truncated."""
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=True, truncation=False)
        return [len(ids) for ids in enc["input_ids"]]

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if self._st is not None:
            out = self._st.encode(list(texts), convert_to_numpy=True, batch_size=self.batch_size,
                                  normalize_embeddings=self.normalize, show_progress_bar=False)
            return np.asarray(out, dtype=np.float32)
        return self._batched(texts, lambda b: dict(self.tokenizer(
            list(b), padding=True, truncation=False, return_tensors="pt")))

    def encode_ids(self, id_lists: Sequence[Sequence[int]]) -> np.ndarray:
        """Embeds pre-tokenized input as given, so ids are never re-tokenized."""
        return self._batched(id_lists, self._features)

    def _batched(self, items: Sequence[Any], featurize: Any) -> np.ndarray:
        chunks = [self._forward(featurize(items[i:i + self.batch_size]))
                  for i in range(0, len(items), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self._dim), np.float32)

    def _features(self, id_lists: Sequence[Sequence[int]]) -> dict[str, Any]:
        torch = self._torch
        width = max(len(ids) for ids in id_lists)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(id_lists), width), pad, dtype=torch.long)
        mask = torch.zeros((len(id_lists), width), dtype=torch.long)
        for row, ids in enumerate(id_lists):  # right padding
            input_ids[row, :len(ids)] = torch.tensor(list(ids), dtype=torch.long)
            mask[row, :len(ids)] = 1
        feats = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in getattr(self.tokenizer, "model_input_names", ()):
            feats["token_type_ids"] = torch.zeros_like(input_ids)
        return feats

    def _forward(self, feats: dict[str, Any]) -> np.ndarray:
        torch = self._torch
        feats = {k: v.to(self.device) for k, v in feats.items()}
        with torch.inference_mode():
            if self._st is not None:  # runs every module: Transformer, Pooling, Dense, ...
                emb = self._st(feats)["sentence_embedding"].float()
            else:
                emb = pooled_forward(self._hf_model, feats, self.pooling)
            if self.normalize:
                emb = torch.nn.functional.normalize(emb, p=2, dim=1)
        return emb.cpu().numpy().astype(np.float32)
