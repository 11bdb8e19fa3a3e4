"""Hypothesis strategies for fuzzing an embeddings server: texts, batches, token ids, sizes.

Why: the inputs that break serving stacks are the ones nobody types in a unit test: CJK next to
emoji, right-to-left scripts, combining marks, control characters, whitespace-only strings, one
word as long as the context, and batch sizes and `dimensions` values at and past the edges.

Every strategy takes keyword-only bounds, validates them up front (raising InvalidArgument with
what to change) and shrinks towards the simplest case: short ASCII texts, small batches, the
first supported size.
"""

from __future__ import annotations

from typing import Any, Sequence

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

__all__ = ["SCRIPTS", "texts", "text_batches", "token_ids", "token_id_batches", "dimensions",
           "token_lengths", "embedding_requests"]

# Code point ranges per script; a text draws from the ones chosen.
SCRIPTS: dict[str, list[tuple[int, int]]] = {
    "ascii": [(0x20, 0x7E)],
    "latin": [(0xC0, 0x24F)],
    "cjk": [(0x4E00, 0x9FFF), (0x3040, 0x30FF), (0xAC00, 0xD7A3)],
    "emoji": [(0x1F300, 0x1F5FF), (0x1F600, 0x1F64F), (0x1F900, 0x1F9FF), (0x2600, 0x26FF)],
    "rtl": [(0x0590, 0x05FF), (0x0600, 0x06FF), (0x200F, 0x200F)],  # Hebrew, Arabic, RLM
    "combining": [(0x0300, 0x036F), (0x20D0, 0x20FF)],
    "control": [(0x00, 0x1F), (0x7F, 0x9F)],
    "whitespace": [(0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x2000, 0x200B), (0x3000, 0x3000)],
}
_WHITESPACE = "".join(chr(c) for lo, hi in SCRIPTS["whitespace"] for c in range(lo, hi + 1))


def _check_size(name: str, min_size: int, max_size: int, *, floor: int = 0) -> None:
    if not isinstance(min_size, int) or not isinstance(max_size, int):
        raise InvalidArgument(f"{name}: min_size and max_size must be ints, got "
                              f"{min_size!r} and {max_size!r}")
    if min_size < floor or max_size < min_size:
        raise InvalidArgument(f"{name}: need {floor} <= min_size <= max_size, got "
                              f"min_size={min_size}, max_size={max_size}")


def _alphabet(scripts: Sequence[str]) -> st.SearchStrategy[str]:
    unknown = [s for s in scripts if s not in SCRIPTS]
    if unknown or not scripts:
        raise InvalidArgument(f"scripts must be a non-empty subset of {sorted(SCRIPTS)}, "
                              f"got {list(scripts)}")
    # ascii first, so shrinking goes towards plain ASCII
    ordered = sorted(scripts, key=lambda s: s != "ascii")
    return st.one_of(*[st.characters(min_codepoint=lo, max_codepoint=hi)
                       for s in ordered for lo, hi in SCRIPTS[s]])


def texts(*, min_size: int = 0, max_size: int = 200,
          scripts: Sequence[str] = tuple(SCRIPTS), long_word_max: int = 0
          ) -> st.SearchStrategy[str]:
    """Strings of min_size..max_size characters mixing the given scripts.

    Besides mixed-script text, it draws whitespace-only strings and, when long_word_max > 0, one
    unbroken word of up to long_word_max letters. Shrinks towards short ASCII.
    """
    _check_size("texts", min_size, max_size)
    if not isinstance(long_word_max, int) or long_word_max < 0:
        raise InvalidArgument(f"texts: long_word_max must be an int >= 0, got {long_word_max!r}")
    options = [st.text(_alphabet(scripts), min_size=min_size, max_size=max_size)]
    if "whitespace" in scripts and max_size >= max(min_size, 1):
        options.append(st.text(st.sampled_from(_WHITESPACE), min_size=max(min_size, 1),
                               max_size=max_size))
    if long_word_max > 0:
        options.append(st.builds(lambda ch, n: ch * n,
                                 st.sampled_from("aé字ش😀"),
                                 st.integers(min_value=max(min_size, 1),
                                             max_value=max(long_word_max, min_size, 1))))
    return st.one_of(*options)


def text_batches(*, min_size: int = 1, max_size: int = 64,
                 elements: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[list[str]]:
    """Lists of min_size..max_size texts (default elements: texts()); shrinks towards one text."""
    _check_size("text_batches", min_size, max_size, floor=1)
    return st.lists(elements if elements is not None else texts(), min_size=min_size,
                    max_size=max_size)


def token_ids(*, vocab_size: int, min_size: int = 1, max_size: int = 64,
              invalid: bool = False) -> st.SearchStrategy[list[int]]:
    """One pre-tokenised input: ids in [0, vocab_size).

    invalid=True puts at least one id outside the vocabulary (negative or >= vocab_size), which
    a server must refuse with a 4xx. Shrinks towards short lists of small ids.
    """
    _check_size("token_ids", min_size, max_size, floor=1)
    if not isinstance(vocab_size, int) or vocab_size < 1:
        raise InvalidArgument(f"token_ids: vocab_size must be a positive int, got {vocab_size!r}")
    valid = st.lists(st.integers(0, vocab_size - 1), min_size=min_size, max_size=max_size)
    if not invalid:
        return valid
    bad = st.one_of(st.integers(max_value=-1, min_value=-(2**31)),
                    st.integers(min_value=vocab_size, max_value=2**31 - 1))
    return st.builds(lambda ids, b, at: ids[:at] + [b] + ids[at:],
                     st.lists(st.integers(0, vocab_size - 1), min_size=min_size - 1,
                              max_size=max_size - 1),
                     bad, st.integers(0, max_size))


def token_id_batches(*, vocab_size: int, min_size: int = 1, max_size: int = 16,
                     max_len: int = 64) -> st.SearchStrategy[list[list[int]]]:
    """Lists of min_size..max_size valid token-id inputs, each 1..max_len ids."""
    _check_size("token_id_batches", min_size, max_size, floor=1)
    return st.lists(token_ids(vocab_size=vocab_size, max_size=max_len), min_size=min_size,
                    max_size=max_size)


def dimensions(*, supported: Sequence[int], embedding_dim: int) -> st.SearchStrategy[int]:
    """`dimensions` values: the supported sizes, their neighbours, the edges and any int.

    A model without Matryoshka (supported empty) gets sizes around 0 and embedding_dim plus
    any int, all of which it must refuse. Shrinks towards the first supported size.
    """
    if not isinstance(embedding_dim, int) or embedding_dim < 1:
        raise InvalidArgument(f"dimensions: embedding_dim must be a positive int, "
                              f"got {embedding_dim!r}")
    sizes = sorted(set(supported))
    if any(not isinstance(d, int) or not 0 < d <= embedding_dim for d in sizes):
        raise InvalidArgument(f"dimensions: supported sizes {list(supported)} must be ints in "
                              f"1..embedding_dim ({embedding_dim})")
    edges = sorted({0, -1, 1, embedding_dim, embedding_dim + 1, 2 * embedding_dim,
                    *(d + k for d in sizes for k in (-1, 1))} - set(sizes))
    options = [st.sampled_from(sizes)] if sizes else []
    options += [st.sampled_from(edges), st.integers(min_value=-(2**31), max_value=2**31 - 1)]
    return st.one_of(*options)


def token_lengths(*, limit: int, spread: int = 4, minimum: int = 1) -> st.SearchStrategy[int]:
    """Token counts within `spread` of the context limit (never below `minimum`)."""
    if not isinstance(limit, int) or limit < minimum:
        raise InvalidArgument(f"token_lengths: limit must be an int >= minimum ({minimum}), "
                              f"got {limit!r}")
    if not isinstance(spread, int) or spread < 0:
        raise InvalidArgument(f"token_lengths: spread must be an int >= 0, got {spread!r}")
    return st.integers(min_value=max(minimum, limit - spread), max_value=limit + spread)


def embedding_requests(*, model: str | None, supported_dims: Sequence[int] = (),
                       embedding_dim: int, max_batch: int = 64,
                       text: st.SearchStrategy[str] | None = None
                       ) -> st.SearchStrategy[dict[str, Any]]:
    """Whole `/v1/embeddings` bodies: a text or a batch of 1..max_batch, maybe `dimensions`
    (supported or not) and an encoding_format of float or base64."""
    _check_size("embedding_requests", 1, max_batch, floor=1)
    element = text if text is not None else texts()
    inputs = st.one_of(element, text_batches(max_size=max_batch, elements=element))
    dims = st.one_of(st.none(), dimensions(supported=supported_dims,
                                           embedding_dim=embedding_dim))

    def body(inp: Any, dim: int | None, fmt: str) -> dict[str, Any]:
        out: dict[str, Any] = {"input": inp, "encoding_format": fmt}
        if model is not None:
            out["model"] = model
        if dim is not None:
            out["dimensions"] = dim
        return out

    return st.builds(body, inputs, dims, st.sampled_from(["float", "base64"]))
