"""Perf options: resolved command line > EMBEDGATE_PERF_* environment > pytest ini > default.

The ini twin lives in ``[tool.pytest.ini_options]`` (``embedgate_perf_*``), because the kit's
``[tool.embedgate]`` table refuses keys it does not own. An invalid value names its source.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from embedgate.gate import DEFAULT_MIN_ROUNDS, DEFAULT_RULES, Rule, RuleError, parse_rules

ENCODINGS = ("float", "base64")


class PerfOptionError(ValueError):
    """An invalid perf option value; the message names the flag, the value and its source."""


def _positive_int(value: Any) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be an integer >= 1")
    return number


def _non_negative_int(value: Any) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be an integer >= 0")
    return number


def _interval_ms(value: Any) -> float:
    ms = float(value)
    if not 1 <= ms <= 10_000:
        raise ValueError("must be between 1 and 10000 milliseconds")
    return ms


def _encoding(value: Any) -> str:
    if value not in ENCODINGS:
        raise ValueError(f"must be one of {', '.join(ENCODINGS)}")
    return value


def _rules(value: Any) -> tuple[Rule, ...]:
    items = re.split(r"[,\s]+", value.strip()) if isinstance(value, str) else list(value)
    items = [i for i in items if i]
    if items in (["none"], ["off"]):
        return ()
    try:
        return parse_rules(items)
    except RuleError as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class PerfOption:
    flag: str
    dest: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    metavar: str
    repeatable: bool = False
    ini_type: str | None = None  # None: string

    @property
    def env(self) -> str:
        return "EMBEDGATE_" + self.dest.upper()

    @property
    def ini(self) -> str:
        return f"embedgate_{self.dest}"

    @property
    def help_text(self) -> str:
        default = ", ".join(self.default) if isinstance(self.default, tuple) else self.default
        return (f"{self.help} Env: {self.env}. Ini: {self.ini}. Default: {default!s}.")


OPTIONS: tuple[PerfOption, ...] = (
    PerfOption("--embedgate-perf-baseline", "perf_baseline", Path, None,
               "pytest-benchmark JSON of the last accepted run (from --benchmark-json); the kit's "
               "gate rules compare this run with it at session end. Without it, the run chosen by "
               "--benchmark-compare (if any) is the baseline.", "PATH"),
    PerfOption("--embedgate-perf-rule", "perf_rules", _rules, DEFAULT_RULES,
               "Gate rule METRIC:[+|-]N[%] (repeatable; replaces the defaults; 'none' turns "
               "the kit's rules off). Env/ini: comma- or space-separated.", "RULE",
               repeatable=True, ini_type="args"),
    PerfOption("--embedgate-perf-min-rounds", "perf_min_rounds", _positive_int,
               DEFAULT_MIN_ROUNDS,
               "Timed rounds both runs need before a round-median figure is gated.", "N"),
    PerfOption("--embedgate-perf-rounds", "perf_rounds", _positive_int, None,
               "Timed rounds for every scenario (default: each scenario's own plan).", "N"),
    PerfOption("--embedgate-perf-sample-ms", "perf_sample_ms", _interval_ms, 20.0,
               "Memory sampling interval in milliseconds.", "MS"),
    PerfOption("--embedgate-perf-startup-launches", "perf_startup_launches", _non_negative_int,
               0, "Extra server launches timed by the startup scenario, on top of the session's "
               "own (each costs a full server start).", "N"),
    PerfOption("--embedgate-perf-encoding", "perf_encoding", _encoding, "float",
               "encoding_format the load generator asks for (float or base64).",
               "{float,base64}"),
)


@dataclass(frozen=True)
class PerfOptions:
    perf_baseline: Path | None = None
    perf_rules: tuple[Rule, ...] = field(default_factory=lambda: parse_rules(DEFAULT_RULES))
    perf_min_rounds: int = DEFAULT_MIN_ROUNDS
    perf_rounds: int | None = None
    perf_sample_ms: float = 20.0
    perf_startup_launches: int = 0
    perf_encoding: str = "float"
    sources: dict[str, str] = field(default_factory=dict, compare=False)


def resolve(cli: Mapping[str, Any], env: Mapping[str, str], ini: Mapping[str, Any],
            rootdir: Path) -> PerfOptions:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in OPTIONS:
        candidates = ((cli.get(spec.dest), spec.flag), (env.get(spec.env), f"env {spec.env}"),
                      (ini.get(spec.dest), f"ini {spec.ini}"))
        raw, where = next(((v, w) for v, w in candidates if v not in (None, "", [])),
                          (None, "default"))
        sources[spec.dest] = where
        if raw is None:
            values[spec.dest] = (spec.parse(spec.default) if spec.dest == "perf_rules"
                                 else spec.default)
            continue
        try:
            values[spec.dest] = spec.parse(raw)
        except (TypeError, ValueError) as exc:
            shown = raw if isinstance(raw, str) else " ".join(map(str, raw))
            raise PerfOptionError(f"{spec.flag}: {shown!r} (from {where}) {exc}") from None
    baseline = values["perf_baseline"]
    if baseline is not None:  # like --benchmark-json: relative to the cwd; from ini: the rootdir
        baseline = Path(baseline).expanduser()
        base_dir = rootdir if sources["perf_baseline"].startswith("ini") else Path.cwd()
        values["perf_baseline"] = baseline if baseline.is_absolute() else base_dir / baseline
    return PerfOptions(**values, sources=sources)


def from_config(config: Any) -> PerfOptions:
    """Read the three sources from a pytest config."""
    cli = {spec.dest: config.getoption(spec.dest) for spec in OPTIONS}
    ini = {}
    for spec in OPTIONS:
        value = config.getini(spec.ini)
        ini[spec.dest] = value if value not in ("", []) else None
    return resolve(cli, dict(os.environ), ini, Path(config.rootpath))
