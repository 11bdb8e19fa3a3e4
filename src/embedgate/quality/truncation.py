"""Texts over the model's limit: how the kit sends them, and how many it changed, per task.

MTEB scores with the model's own truncation: sentence-transformers cuts a text to
``max_seq_length`` tokens and keeps the special tokens. A server such as vLLM instead refuses a
text over its limit (HTTP 400). ``--embedgate-truncation`` says what the kit does with one:

- ``api``: resend it with vLLM's ``truncate_prompt_tokens = max_tokens``. vLLM then cuts with the
  tokenizer's own truncation, special tokens kept: the ids sentence-transformers embeds. (Asking
  for ``truncation_side`` too makes vLLM slice the ids after tokenizing, which drops BERT's final
  [SEP]; the kit does not.)
- ``tokenizer``: cut it here with the model's own tokenizer to ``max_tokens`` ids, special
  tokens kept, and send the ids.
- ``fail``: fail the test, naming the text.
- ``auto``: ``api`` on vLLM; else ``tokenizer`` where the model's tokenizer is on this machine
  and the server takes token ids; else ``fail``.

Every changed text is counted, so the report says how many of each task's texts were cut, how.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

from embedgate.quality.scoring import CachingEncoder
from embedgate.serve.client import EmbeddingClient, EmbeddingHTTPError

MODES = ("auto", "api", "tokenizer", "fail")


class OverLimitError(RuntimeError):
    """A text the server refused that the chosen mode may not (or could not) shorten."""


def _shown(text: str | list[int]) -> str:
    if isinstance(text, str):
        return repr(text[:100] + ("…" if len(text) > 100 else "")) + f" ({len(text)} chars)"
    return f"{len(text)} token ids"


def choose_mode(requested: str, *, backend: str, token_ids: bool,
                tokenizer: Callable[[], Any]) -> tuple[str, Any, str]:
    """(mode, tokenizer or None, why) for the session; `tokenizer()` loads the model's
    tokenizer or raises when it is not on this machine."""
    if requested in ("api", "fail"):
        return requested, None, "asked for"
    if requested == "auto" and backend == "vllm":
        return "api", None, "auto: vLLM truncates on request (truncate_prompt_tokens)"
    try:
        loaded = tokenizer()
    except Exception as exc:  # noqa: BLE001 - no local tokenizer: say so, then fail or fall back
        if requested == "tokenizer":
            raise OverLimitError(f"--embedgate-truncation tokenizer needs the model's tokenizer "
                                 f"on this machine: {exc}") from None
        return "fail", None, f"auto: no local tokenizer ({str(exc)[:160]})"
    if not token_ids and requested == "auto":
        return "fail", None, "auto: the profile says the server takes no token ids"
    return "tokenizer", loaded, ("asked for" if requested == "tokenizer"
                                 else f"auto: {backend} server, the model's tokenizer is here")


class LimitedEmbed:
    """``embed(texts)`` for the caching encoder, sending texts over ``max_tokens`` as `mode`
    says and recording each text it shortened (text -> its token count, None if unknown)."""

    def __init__(self, client: EmbeddingClient, *, mode: str, max_tokens: int,
                 tokenizer: Any = None, why: str = ""):
        if mode not in MODES[1:]:
            raise ValueError(f"mode must be one of {MODES[1:]}")
        if mode == "tokenizer" and tokenizer is None:
            raise ValueError("mode 'tokenizer' needs the model's tokenizer")
        self.client, self.mode, self.max_tokens = client, mode, max_tokens
        self.tokenizer, self.why = tokenizer, why
        self.truncated: dict[str, int | None] = {}

    def how(self) -> str:
        n = self.max_tokens
        return {"api": f"resent with truncate_prompt_tokens={n}: the server's tokenizer cuts to "
                       f"{n} tokens, special tokens kept (as sentence-transformers does)",
                "tokenizer": f"cut to {n} tokens by the model's tokenizer here, special tokens "
                             f"kept (as sentence-transformers does), sent as token ids",
                "fail": f"a text over {n} tokens fails its test"}[self.mode]

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if self.mode == "tokenizer":
            return self._by_tokenizer(texts)
        size = self.client.batch_size
        chunks = [texts[i:i + size] for i in range(0, len(texts), size)]
        if len(chunks) == 1 or self.client.concurrency == 1:
            return np.concatenate([self._chunk(c) for c in chunks])
        with ThreadPoolExecutor(max_workers=self.client.concurrency) as pool:
            return np.concatenate(list(pool.map(self._chunk, chunks)))

    def _chunk(self, chunk: list[str]) -> np.ndarray:
        try:
            return self.client.embed(chunk)
        except EmbeddingHTTPError as exc:
            if not 400 <= exc.status < 500:
                raise
        # Some text of the batch was refused: find which, one text at a time.
        return np.stack([self._one(text) for text in chunk])

    def _one(self, text: str) -> np.ndarray:
        try:
            return self.client.embed([text])[0]
        except EmbeddingHTTPError as exc:
            if not 400 <= exc.status < 500:
                raise
            refused = exc
        if self.mode == "fail":
            raise OverLimitError(
                f"the server refused a text (HTTP {refused.status}: {refused.body[:300]}) and "
                f"--embedgate-truncation is fail; text: {_shown(text)}. MTEB embeds such a text "
                f"truncated to the model's limit ({self.max_tokens} tokens): rerun with "
                f"--embedgate-truncation api or tokenizer to do the same")
        try:
            vector = self.client.embed(
                [text], extra_body={"truncate_prompt_tokens": self.max_tokens})[0]
        except EmbeddingHTTPError as exc:
            raise OverLimitError(
                f"the server refused a text (HTTP {refused.status}: {refused.body[:300]}) and "
                f"again with truncate_prompt_tokens={self.max_tokens} (HTTP {exc.status}: "
                f"{exc.body[:300]}); text: {_shown(text)}. If the server cannot truncate, use "
                f"--embedgate-truncation tokenizer") from None
        self.truncated[text] = None
        return vector

    def _by_tokenizer(self, texts: list[str]) -> np.ndarray:
        ids = self.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        over = [i for i, row in enumerate(ids) if len(row) > self.max_tokens]
        out: list[np.ndarray | None] = [None] * len(texts)
        fit = [i for i in range(len(texts)) if len(ids[i]) <= self.max_tokens]
        if fit:
            for i, vec in zip(fit, self.client.embed([texts[i] for i in fit])):
                out[i] = vec
        if over:
            cut = self.tokenizer([texts[i] for i in over], add_special_tokens=True,
                                 truncation=True, max_length=self.max_tokens)["input_ids"]
            for i, row, vec in zip(over, cut, self.client.embed([list(r) for r in cut])):
                out[i] = vec
                self.truncated[texts[i]] = len(ids[i])
        return np.stack(out)


class LimitAwareEncoder(CachingEncoder):
    """The caching encoder over a `LimitedEmbed`; remembers which texts each task asked for, so
    a task's report can say how many of its texts were shortened."""

    def __init__(self, embed: LimitedEmbed, **kwargs: Any):
        super().__init__(embed, **kwargs)
        self.limited = embed
        self.asked: dict[str, set[str]] = {}

    def encode(self, texts: list[str], label: str = "") -> np.ndarray:
        self.asked.setdefault(label, set()).update(texts)
        return super().encode(texts, label)

    def truncation(self, label: str) -> dict[str, Any]:
        """quality.json's ``truncation`` entry for one task."""
        asked = self.asked.get(label, set())
        cut = [t for t in asked if t in self.limited.truncated]
        counts = [self.limited.truncated[t] for t in cut if self.limited.truncated[t]]
        return {"mode": self.limited.mode, "why": self.limited.why, "how": self.limited.how(),
                "max_tokens": self.limited.max_tokens, "truncated": len(cut),
                "texts": len(asked), **({"longest_tokens": max(counts)} if counts else {})}

    def summary(self) -> str:
        return (f"truncation: {self.limited.mode} ({self.limited.why}): "
                f"{len(self.limited.truncated)} distinct texts over {self.limited.max_tokens} "
                f"tokens {'shortened' if self.limited.truncated else 'seen'}")


def truncation_note(entry: dict[str, Any]) -> str | None:
    """The result note for a task whose texts were shortened; None when none was."""
    if not entry.get("truncated"):
        return None
    return (f"{entry['truncated']} of {entry['texts']} texts over the model's limit of "
            f"{entry['max_tokens']} tokens: {entry['how']}")


__all__ = ["LimitAwareEncoder", "LimitedEmbed", "MODES", "OverLimitError", "choose_mode",
           "truncation_note"]
