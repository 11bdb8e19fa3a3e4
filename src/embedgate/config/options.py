"""The kit's one option system: a table of `OptionSpec`, resolved from four sources.

Every option, the perf suite's too, has a namespaced command-line flag (``--embedgate-*``, so it
cannot collide with another plugin's ``--profile`` or ``--model``), an ``EMBEDGATE_*`` environment
twin and a ``[tool.embedgate]`` key. The first source that sets a value wins: command line, then
environment, then config file, then the default. An invalid value is an `OptionError` that names
the flag, the value and where the value came from.

Relative paths follow where they were written: from the command line or the environment they are
read from the directory pytest was started in, from ``[tool.embedgate]`` from the rootdir (where
the config file is); a default is read from the rootdir when the run has a config file and from
the invocation directory otherwise (an installed kit run from anywhere writes its reports there).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FLAG_PREFIX = "--embedgate-"
ENV_PREFIX = "EMBEDGATE_"
CONFIG_TABLE = "[tool.embedgate]"
DEFAULT = "default"


@dataclass(frozen=True)
class OptionSpec:
    """One option: ``name`` gives the flag, ``dest`` the env twin and the config key."""

    name: str                      # the flag without its prefix: "profile", "perf-rule"
    dest: str                      # the env twin (upper-cased) and the config key
    parse: Callable[[Any], Any]    # raw text or config value -> value; ValueError when invalid
    default: Any
    help: str
    metavar: str | None = None
    repeatable: bool = False       # a flag given many times appends
    const: str | None = None       # the value of the bare flag (``--embedgate-record-only``)

    @property
    def flag(self) -> str:
        return FLAG_PREFIX + self.name

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()

    @property
    def help_text(self) -> str:
        default = ", ".join(map(str, self.default)) if isinstance(self.default, tuple) \
            else self.default
        return (f"{self.help} Env: {self.env}. Config: {CONFIG_TABLE} {self.dest}. "
                f"Default: {default!s}.")


class OptionError(ValueError):
    """An option value that cannot be used; the message names the flag and its source."""


def on_off(value: Any) -> bool:
    """A switch, written on/off, true/false, 1/0 or yes/no (or a TOML boolean)."""
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("on", "true", "1", "yes"):
        return True
    if str(value).lower() in ("off", "false", "0", "no"):
        return False
    raise ValueError("must be on or off")
def one_of(*allowed: str) -> Callable[[Any], str]:
    """A parser for an option that takes one of a few words."""
    def parse(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value
    return parse


def int_at_least(least: int) -> Callable[[Any], int]:
    """A parser for an integer option with a lower bound."""
    def parse(value: Any) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = least - 1
        if number < least:
            raise ValueError(f"must be an integer >= {least}")
        return number
    return parse


def add_options(group: Any, specs: Iterable[OptionSpec]) -> None:
    """Register the specs on a pytest option group (argparse formats help text with %)."""
    for spec in specs:
        bare = {"nargs": "?", "const": spec.const} if spec.const is not None else {}
        group.addoption(spec.flag, dest=f"embedgate_{spec.dest}", default=None,
                        metavar=spec.metavar, help=spec.help_text.replace("%", "%%"),
                        action="append" if spec.repeatable else "store", **bare)


def cli_values(getoption: Callable[[str], Any], specs: Iterable[OptionSpec]) -> dict[str, Any]:
    """What the command line set, keyed by dest (None or [] where it set nothing)."""
    return {spec.dest: getoption(f"embedgate_{spec.dest}") for spec in specs}


def read_config_table(rootdir: Path, known: Iterable[OptionSpec]) -> dict[str, Any]:
    """The ``[tool.embedgate]`` table of rootdir/pyproject.toml ({} without one); unknown keys
    are refused, so a typo never passes as a default."""
    pyproject = rootdir / "pyproject.toml"
    if not pyproject.is_file():
        return {}
    with pyproject.open("rb") as fh:
        table = tomllib.load(fh).get("tool", {}).get("embedgate", {})
    keys = {spec.dest for spec in known}
    unknown = sorted(set(table) - keys)
    if unknown:
        raise OptionError(f"{pyproject}: unknown {CONFIG_TABLE} key(s) {unknown}; "
                          f"known: {sorted(keys)}")
    return table


def _unset(value: Any) -> bool:
    return value is None or value == "" or value == []


def resolve_values(specs: Iterable[OptionSpec], cli: Mapping[str, Any], env: Mapping[str, str],
                   config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Each option's parsed value and the name of the source it came from."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in specs:
        candidates = ((cli.get(spec.dest), spec.flag),
                      (env.get(spec.env), f"env {spec.env}"),
                      (config.get(spec.dest), f"{CONFIG_TABLE} {spec.dest}"))
        raw, where = next(((v, w) for v, w in candidates if not _unset(v)), (None, DEFAULT))
        sources[spec.dest] = where
        if raw is None:
            values[spec.dest] = spec.default
            continue
        try:
            values[spec.dest] = spec.parse(raw)
        except (TypeError, ValueError) as exc:
            shown = raw if isinstance(raw, str) else " ".join(map(str, raw)) \
                if isinstance(raw, (list, tuple)) else raw
            raise OptionError(f"{spec.flag}: {shown!r} (from {where}) {exc}") from None
    return values, sources


@dataclass(frozen=True)
class PathBase:
    """The directories relative paths are read from (see the module docstring)."""

    rootdir: Path
    invocation_dir: Path
    has_config_file: bool = True

    @classmethod
    def of(cls, base: "PathBase | Path") -> "PathBase":
        """A PathBase as given, or one directory for every source (library callers)."""
        return base if isinstance(base, PathBase) else cls(Path(base), Path(base))

    def directory(self, source: str) -> Path:
        """The directory a relative path from this source is read from."""
        from_root = source.startswith(CONFIG_TABLE) or (source == DEFAULT and self.has_config_file)
        return self.rootdir if from_root else self.invocation_dir

    def resolve(self, value: Any, source: str) -> Path | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.directory(source) / path
