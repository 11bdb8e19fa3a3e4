"""Inputs for the perf scenarios: distinct texts of a calibrated length in tokens.

Texts are windows over a word stream made from the kit's own STS sentences, so every request
carries different text (no server-side cache can help) and the run is deterministic. The length in
words that gives ~N tokens is found against the server itself, from ``usage.prompt_tokens`` (special
tokens included), so no tokenizer is needed on the client and any OpenAI-compatible server works.
A missing corpus is an error: other texts would silently change every figure and baseline.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

# Lengths named by the issue: short ~16 tokens, medium ~128, long ~the model's maximum.
SHORT_TOKENS = 16
MEDIUM_TOKENS = 128
LONG_MARGIN = 0.97      # long inputs aim a little under the limit: texts vary in tokens per word
OFFSET_STEP = 97        # distinct texts start this many words apart (a prime spreads them)
PROBES = 8              # texts averaged per calibration step
WORDS_PER_TOKEN_GUESS = 0.75

# post(texts) -> (HTTP status, usage.prompt_tokens or None): one embeddings request.
Post = Callable[[Sequence[str]], "tuple[int, int | None]"]


class CalibrationError(RuntimeError):
    """The server refused every candidate length, or answered with an error."""


class MissingCorpusError(FileNotFoundError):
    """The workload texts are not where the kit expects them; other texts would change every
    figure, so the run stops instead of substituting any."""


def sentences_from_tsv(path: str | Path, columns: Sequence[str] = ("sentence1", "sentence2"),
                       ) -> list[str]:
    """The unique sentences of a TSV with a header row (e.g. fixtures/datasets/sts_en.tsv)."""
    path = Path(path)
    if not path.is_file():
        raise MissingCorpusError(
            f"perf workload corpus not found: {path}. The kit ships it as "
            f"fixtures/datasets/{path.name} in the checkout and as "
            f"embedgate/fixtures/datasets/{path.name} in the wheel: run from a checkout, or "
            f"reinstall embedgate from its wheel (pip install --force-reinstall embedgate)")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    missing = [c for c in columns if rows and c not in rows[0]]
    if not rows or missing:
        raise ValueError(f"{path}: expected a TSV with a header and columns {list(columns)}")
    return list(dict.fromkeys(row[c] for row in rows for c in columns if row[c]))


_SYNTHETIC_VOCABULARY = (
    "the a model server request answer text short long sentence river bank city market table "
    "window garden morning evening quickly slowly bright quiet green blue old new first last "
    "people children teacher doctor engineer writer walked opened built found wrote measured "
    "under over between after before because while although into from with without about"
).split()


def synthetic_sentences(count: int = 400, seed: int = 0) -> list[str]:
    """Deterministic pseudo-sentences (6-14 words) from a fixed vocabulary, for runs whose
    figures do not matter (the kit's own unit tests); never a stand-in for the corpus."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_SYNTHETIC_VOCABULARY) for _ in range(rng.randint(6, 14))) + "."
            for _ in range(count)]




def default_stream(corpus: Path) -> WordStream:
    """The word stream over `corpus` (the kit's STS sentences); MissingCorpusError when absent."""
    return WordStream(sentences_from_tsv(corpus))


class WordStream:
    def __init__(self, sentences: Sequence[str]):
        self.words = [w for s in sentences for w in s.split()]
        if not self.words:
            raise ValueError("the word stream needs at least one non-empty sentence")

    def text(self, index: int, n_words: int) -> str:
        """Window `index`: consecutive words from a spread-out start; once every start has been
        used, later cycles step through the stream with a stride, so texts stay distinct."""
        n = len(self.words)
        start = (index * OFFSET_STEP) % n
        stride = 1 + index // n
        return " ".join(self.words[(start + k * stride) % n] for k in range(n_words))

    def texts(self, n_words: int, count: int, first: int = 0) -> list[str]:
        return [self.text(first + i, n_words) for i in range(count)]


@dataclass(frozen=True)
class TextLength:
    """A calibrated length: `n_words` words give ~`mean_tokens` tokens (server's count)."""

    name: str
    target_tokens: int
    n_words: int
    mean_tokens: float | None
    tokens_measured: bool

    def as_dict(self) -> dict[str, object]:
        return {"input_length": self.name, "input_target_tokens": self.target_tokens,
                "input_words": self.n_words, "input_mean_tokens": self.mean_tokens,
                "input_tokens_measured": self.tokens_measured}


class Calibrator:
    def __init__(self, stream: WordStream, post: Post):
        self.stream = stream
        self.post = post

    def mean_tokens(self, n_words: int) -> float | None:
        """Mean tokens per text at this length; inf if refused (too long); None if not reported."""
        status, tokens = self.post(self.stream.texts(n_words, PROBES, first=10_000))
        if status == 400:
            return float("inf")
        if status != 200:
            raise CalibrationError(f"calibration request ({n_words} words) -> HTTP {status}")
        return None if tokens is None else tokens / PROBES

    def fit(self, name: str, target_tokens: int, *, hard_limit: int | None = None) -> TextLength:
        """The largest word count whose mean token count is <= target (binary search)."""
        if target_tokens < 1:
            raise ValueError("target_tokens must be >= 1")
        first = self.mean_tokens(1)
        if first is None:  # the server reports no usage: fall back to a stated guess
            n = max(1, int(target_tokens * WORDS_PER_TOKEN_GUESS))
            return TextLength(name, target_tokens, n, None, tokens_measured=False)
        if first > target_tokens:
            raise CalibrationError(f"{name}: one word is already {first} tokens, more than "
                                   f"the target {target_tokens}")
        lo, hi = 1, 2
        while self.mean_tokens(hi) <= target_tokens:  # grow until over the target
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.mean_tokens(mid) <= target_tokens:
                lo = mid
            else:
                hi = mid
        n = lo
        if hard_limit is not None:
            n = self._under_limit(n, hard_limit)
        return TextLength(name, target_tokens, n, self.mean_tokens(n), tokens_measured=True)

    def _under_limit(self, n_words: int, limit: int, pool: int = 32) -> int:
        """Shrink until `pool` distinct texts are all accepted (none over the model's limit)."""
        for _ in range(50):
            status, _ = self.post(self.stream.texts(n_words, pool))
            if status == 200:
                return n_words
            if status != 400 or n_words <= 1:
                raise CalibrationError(f"texts of {n_words} words -> HTTP {status} "
                                       f"(limit {limit} tokens)")
            n_words = max(1, int(n_words * 0.98))
        raise CalibrationError(f"could not fit texts under {limit} tokens")


def standard_lengths(calibrator: Calibrator, max_tokens: int) -> dict[str, TextLength]:
    """short (~16 tokens), medium (~128) and long (~the model's maximum) for this server."""
    long_target = max(1, int(max_tokens * LONG_MARGIN))
    out = {"short": calibrator.fit("short", min(SHORT_TOKENS, long_target))}
    out["medium"] = calibrator.fit("medium", min(MEDIUM_TOKENS, long_target))
    out["long"] = calibrator.fit("long", long_target, hard_limit=max_tokens)
    return out
