"""What each serving engine's HTTP API does, as data: ``fixtures/backends/<name>.toml``.

Why: engines differ where the OpenAI spec is silent (which name `model` echoes, whether an input
of exactly the context length fits) and where they break it (error bodies, unknown model names).
The api suite reads its expectations from the profile and this table instead of branching on the
backend's name, and every entry says where it comes from (for SGLang: the file and line of the
version the kit targets) and what the suite makes of it:

- ``expected``: the OpenAI contract as the suite checks it;
- ``accepted``: a deviation the spec allows or leaves open; the suite accepts it;
- ``defect``: a real conformance defect; the suite still fails it, and says it is documented.

A table also lists the log lines that name why a server did not start (``[[startup_failure]]``),
so the kit's start-failure message says "cause: out of GPU memory" above the log tail.

    table = load_behaviour("sglang")
    table.value("error_body")      # "flat"
    table.explain(log_text)        # ["cause: ... (hint: ...)"]
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedgate.resources import backends_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["BEHAVIOURS", "Behaviour", "BackendBehaviour", "BehaviourError", "StartupFailure",
           "load_behaviour", "table_names"]

VERDICTS = ("expected", "accepted", "defect")
# key -> the values it may take (None: any string). The suite reads the first six.
BEHAVIOURS: dict[str, tuple[Any, ...] | None] = {
    "health_path": None,
    "error_body": ("openai", "flat"),
    "response_model": ("served_name", "any"),
    "at_limit": ("embedded", "refused"),
    "over_limit": ("reject", "truncate", "either"),
    "token_ids": (True, False),
    "unknown_model": ("refused", "embedded"),
    "out_of_vocabulary_ids": ("refused", "unchecked"),
    "blank_text": ("refused", "embedded"),
    "empty_list": ("refused",),
    "bogus_encoding_format": ("refused",),
    "wrong_types": ("refused",),
    "dimensions": ("listed",),
    "base64": ("little-endian float32",),
    "usage": ("exact",),
    "auth_error_body": None,
}
REQUIRED = tuple(BEHAVIOURS)


class BehaviourError(ValueError):
    """A behaviour table that is missing or malformed; the message names the file and key."""


@dataclass(frozen=True)
class Behaviour:
    """One documented behaviour: its value, where it comes from and what the suite makes of it."""

    key: str
    value: Any
    verdict: str
    source: str
    note: str = ""


@dataclass(frozen=True)
class StartupFailure:
    """A log line that names why a server did not start, and what to do about it."""

    pattern: str
    cause: str
    hint: str
    source: str

    def matches(self, log_text: str) -> bool:
        return re.search(self.pattern, log_text) is not None


@dataclass(frozen=True)
class BackendBehaviour:
    """One backend's table (``fixtures/backends/<name>.toml``)."""

    name: str
    version: str
    source: str
    path: Path
    entries: dict[str, Behaviour]
    startup_failures: tuple[StartupFailure, ...] = ()

    def value(self, key: str) -> Any:
        return self.entries[key].value

    def describe(self, key: str) -> str:
        """`name version: source` of an entry, for findings that meet a documented behaviour."""
        entry = self.entries[key]
        return f"{self.name} {self.version}: {entry.source}"

    def defects(self) -> list[Behaviour]:
        return [e for e in self.entries.values() if e.verdict == "defect"]

    def explain(self, log_text: str) -> list[str]:
        """One line per known startup failure the log shows (first match of each cause)."""
        seen, lines = set(), []
        for failure in self.startup_failures:
            if failure.cause not in seen and failure.matches(log_text):
                seen.add(failure.cause)
                lines.append(f"cause: {failure.cause} ({self.name} {self.version}: "
                             f"{failure.source}). {failure.hint}")
        return lines


def table_names() -> list[str]:
    return sorted(p.stem for p in backends_dir().glob("*.toml"))


def _entry(key: str, raw: Any, path: Path) -> Behaviour:
    if not isinstance(raw, dict) or not {"value", "verdict", "source"} <= set(raw):
        raise BehaviourError(f"{path}: [behaviour.{key}] needs value, verdict and source")
    allowed = BEHAVIOURS[key]
    if allowed is not None and raw["value"] not in allowed:
        raise BehaviourError(f"{path}: [behaviour.{key}] value {raw['value']!r} is not one of "
                             f"{list(allowed)}")
    if raw["verdict"] not in VERDICTS:
        raise BehaviourError(f"{path}: [behaviour.{key}] verdict {raw['verdict']!r} is not one "
                             f"of {list(VERDICTS)}")
    return Behaviour(key, raw["value"], raw["verdict"], raw["source"], raw.get("note", ""))


def load_behaviour(name: str) -> BackendBehaviour:
    """The table of backend `name`; a missing table or key is a BehaviourError."""
    path = backends_dir() / f"{name}.toml"
    if not path.is_file():
        raise BehaviourError(f"no API behaviour table for {name!r} (looked for {path}); known: "
                             f"{', '.join(table_names())}")
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    raw = data.get("behaviour", {})
    missing = [k for k in REQUIRED if k not in raw]
    unknown = sorted(set(raw) - set(BEHAVIOURS))
    if missing or unknown:
        raise BehaviourError(f"{path}: missing [behaviour] keys {missing}, unknown {unknown}")
    failures = []
    for item in data.get("startup_failure", []):
        try:
            re.compile(item["pattern"])
            failures.append(StartupFailure(item["pattern"], item["cause"], item["hint"],
                                           item["source"]))
        except (KeyError, re.error) as exc:
            raise BehaviourError(f"{path}: a [[startup_failure]] needs a valid pattern, cause, "
                                 f"hint and source ({exc})") from None
    return BackendBehaviour(name=data.get("name", name), version=data.get("version", ""),
                            source=data.get("source", ""), path=path,
                            entries={k: _entry(k, raw[k], path) for k in REQUIRED},
                            startup_failures=tuple(failures))
