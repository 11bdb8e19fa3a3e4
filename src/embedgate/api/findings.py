"""How an api check words a failure: what was sent, what came back, what was expected.

Every finding of the api suite has that one three-line form, so a reader can tell from the
message alone whether the server or the check is wrong. The describers keep each line short but
faithful: a 5,000-character text shows as its first 60 characters and its length, a batch as its
size, its length range and its first two items.

    finding("the answer is not unit norm", sent=describe_payload({"input": "hi"}),
            got="norm 1.01", expected="norm 1 within 1e-05")
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["describe_input", "describe_payload", "finding", "miscount", "short"]


def short(value: Any, limit: int = 60) -> str:
    """`value` cut to `limit` characters: a string as its repr, anything else as JSON."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text if len(text) <= limit else text[:limit] + "…"
    return repr(text) if isinstance(value, str) else text


def describe_input(inp: Any) -> str:
    """A short, faithful summary of an `input` field."""
    if isinstance(inp, str):
        return short(inp) + (f" ({len(inp)} chars)" if len(inp) > 60 else "")
    if isinstance(inp, list) and inp and all(isinstance(t, int) for t in inp):
        return f"{len(inp)} token ids {short(inp, 40)}"
    if isinstance(inp, list) and len(inp) == 1 and isinstance(inp[0], str):
        return f"[{describe_input(inp[0])}]"
    if isinstance(inp, list) and inp and all(isinstance(t, str) for t in inp):
        lens = sorted(len(t) for t in inp)
        return (f"{len(inp)} texts of {lens[0]}..{lens[-1]} chars "
                f"[{', '.join(short(t, 30) for t in inp[:2])}{', …' if len(inp) > 2 else ''}]")
    if isinstance(inp, list) and inp and all(isinstance(t, list) for t in inp):
        lens = sorted(len(t) for t in inp)
        return f"{len(inp)} token-id lists of {lens[0]}..{lens[-1]} ids {short(inp, 40)}"
    return short(inp)


def describe_payload(payload: dict[str, Any]) -> str:
    """An embeddings request in a line: `input` summarised, every other field cut short."""
    fields = [f"input={describe_input(v)}" if k == "input" else f"{k}={short(v, 40)}"
              for k, v in payload.items()]
    return "POST /v1/embeddings {" + ", ".join(fields) + "}"


def finding(what: str, *, sent: str, got: str, expected: str) -> str:
    """The one format of every failure message in the suite."""
    return f"{what}\n  sent:     {sent}\n  got:      {got}\n  expected: {expected}"


def miscount(got: Any, want: int) -> str:
    """How a token count is wrong, in the words a headline needs: over- or under-counted."""
    if not isinstance(got, int) or isinstance(got, bool):
        return f"not counted (prompt_tokens {got!r})"
    if got > want:
        return f"over-counted by {got - want} ({got} for {want})"
    if got < want:
        return f"under-counted by {want - got} ({got} for {want})"
    return f"counted exactly ({got})"
