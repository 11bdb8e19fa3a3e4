"""Loading an embedding model in-process and turning its hidden states into sentence vectors.

The `hf` backend's server (embedgate.serve.hf_server) and the parity reference
(embedgate.models.reference) must embed the same way, or a parity failure could be the kit's own
disagreement. Both load through here: sentence-transformers when the model has ``modules.json``
(its Pooling, Dense and Normalize modules then count), else plain transformers pooled with the
profile's pooling.

torch, transformers and sentence-transformers are imported only when a model is loaded or pooled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# A profile's pooling name -> the sentence-transformers Pooling module's pooling_mode.
ST_POOLING = {"mean": "mean", "cls": "cls", "last": "lasttoken"}


def has_st_modules(model: str) -> bool:
    """A ``modules.json`` marks a sentence-transformers model (local dir or hub cache)."""
    if Path(model).is_dir():
        return (Path(model) / "modules.json").is_file()
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(model, "modules.json")  # honours HF_HUB_OFFLINE
        return True
    except Exception:
        return False


@dataclass
class LoadedModel:
    """A model ready for inference, in eval mode on its device.

    `st` is the SentenceTransformer when the model has ``modules.json``, else None; `model` is
    the transformers model (inside `st` when there is one; None if `st` does not expose it).
    """

    tokenizer: Any
    model: Any
    st: Any = None


def load_model(model: str, *, max_tokens: int, device: str, dtype: Any = None) -> LoadedModel:
    """Loads `model` (a directory or hub id) on `device`; `dtype` (a torch dtype) None keeps the
    checkpoint's. A sentence-transformers model reads at most `max_tokens` tokens."""
    if has_st_modules(model):
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(model), device=device)
        st.max_seq_length = max_tokens
        if dtype is not None:
            st.to(dtype)
        st.eval()
        return LoadedModel(tokenizer=st.tokenizer, model=getattr(st[0], "auto_model", None), st=st)
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model))
    hf_model = AutoModel.from_pretrained(str(model))
    hf_model.to(device=device, dtype=dtype).eval()
    return LoadedModel(tokenizer=tokenizer, model=hf_model)


def st_pooling_mode(st: Any) -> str | None:
    """The pooling_mode of a SentenceTransformer's Pooling module; None when it has none."""
    pool = next((m for m in st if type(m).__name__ == "Pooling"), None)
    if pool is None:
        return None
    mode = getattr(pool, "pooling_mode", None)  # sentence-transformers >= 5
    if mode is None and hasattr(pool, "get_pooling_mode_str"):
        mode = pool.get_pooling_mode_str()
    return mode or None


def st_pooling_mismatch(st: Any, pooling: str) -> str | None:
    """The model's own pooling mode when it is not `pooling` (a profile's name), else None."""
    mode = st_pooling_mode(st)
    return mode if mode is not None and mode != ST_POOLING[pooling] else None


def pool(hidden: Any, mask: Any, pooling: str) -> Any:
    """One vector per row of `hidden` (batch, tokens, dim), reading only the tokens `mask` keeps.

    "cls" takes the first token, "last" the last real one (right or left padding alike), "mean"
    averages the real tokens.
    """
    import torch

    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def pooled_forward(model: Any, features: dict[str, Any], pooling: str) -> Any:
    """Runs a transformers model on `features` (on its device) and pools its last hidden state
    in float32, unnormalised; the caller holds torch.inference_mode."""
    out = model(**features)
    hidden = getattr(out, "last_hidden_state", None)
    hidden = (out[0] if hidden is None else hidden).float()
    return pool(hidden, features["attention_mask"], pooling)


def l2_normalize(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; an all-zero row stays zero."""
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
