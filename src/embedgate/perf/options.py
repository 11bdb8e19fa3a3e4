"""The perf suite's options (baseline, gate rules, rounds, sampling) and the resolved `PerfOptions`.

They are kit options like any other (`embedgate.config.options`): ``--embedgate-perf-*`` flags,
``EMBEDGATE_PERF_*`` environment twins and ``perf_*`` keys in ``[tool.embedgate]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from embedgate.config.options import (OptionError, OptionSpec, PathBase, int_at_least,
                                      on_off, one_of, resolve_values)
from embedgate.perf import load_options
from embedgate.perf.load_options import LoadOptions
from embedgate.perf.rules import DEFAULT_MIN_ROUNDS, DEFAULT_RULES, Rule, RuleError, parse_rules

ENCODINGS = ("float", "base64")
LOAD_ENGINES = ("inprocess", "locust")


PerfOptionError = OptionError


_positive_int = int_at_least(1)
_non_negative_int = int_at_least(0)


def _interval_ms(value: Any) -> float:
    ms = float(value)
    if not 1 <= ms <= 10_000:
        raise ValueError("must be between 1 and 10000 milliseconds")
    return ms


_BYTE_UNITS = {"": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def _bytes(value: Any) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    unit = match.group(2).lower() if match else None
    if unit not in _BYTE_UNITS:
        raise ValueError("must be a size such as 1048576, 512KiB or 1MiB")
    return int(float(match.group(1)) * _BYTE_UNITS[unit])
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


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("perf-baseline", "perf_baseline", Path, None,
               "pytest-benchmark JSON of the last accepted run (from --benchmark-json); the kit's "
               "gate rules compare this run with it at session end. Without it, the run chosen by "
               "--benchmark-compare (if any) is the baseline.", metavar="PATH"),
    OptionSpec("perf-rule", "perf_rules", _rules, DEFAULT_RULES,
               "Gate rule METRIC:[+|-]N[%] (repeatable; replaces the defaults; 'none' turns "
               "the kit's rules off). Env: comma- or space-separated; config: a list or such a string.", metavar="RULE",
               repeatable=True),
    OptionSpec("perf-min-rounds", "perf_min_rounds", _positive_int,
               DEFAULT_MIN_ROUNDS,
               "Timed rounds both runs need before a round-median figure is gated.", metavar="N"),
    OptionSpec("perf-allow-unjudged", "perf_allow_unjudged", on_off, False,
               "Let rules the gate could not judge (a figure missing, fewer rounds than "
               "--embedgate-perf-min-rounds, pytest-benchmark disabled, nothing measured) pass; "
               "without it they fail the gate. The bare flag means on.", metavar="{on,off}",
               const="on"),
    OptionSpec("perf-rounds", "perf_rounds", _positive_int, None,
               "Timed rounds for every scenario (default: each scenario's own plan).", metavar="N"),
    OptionSpec("perf-sample-ms", "perf_sample_ms", _interval_ms, 20.0,
               "Memory sampling interval in milliseconds.", metavar="MS"),
    OptionSpec("perf-startup-launches", "perf_startup_launches", _non_negative_int,
               0, "Extra server launches timed by the startup scenario, on top of the session's "
               "own (each costs a full server start).", metavar="N"),
    OptionSpec("perf-encoding", "perf_encoding", _encoding, "float",
               "encoding_format the load generator asks for (float or base64).",
               metavar="{float,base64}"),
    OptionSpec("perf-soak-requests", "perf_soak_requests", _positive_int, 4000,
               "Requests the soak scenario sends (4 in flight, memory read every 100; capped at "
               "120 s).", metavar="N"),
    OptionSpec("perf-soak-max-growth", "perf_soak_max_growth", _bytes, 2**20,
               "Memory the server may gain per 1,000 soak requests (bytes, or with KiB/MiB/GiB): "
               "the soak fails when the 95% CI of its memory slope is not below it.",
               metavar="SIZE"),
    OptionSpec("perf-load-engine", "perf_load_engine", one_of(*LOAD_ENGINES), "inprocess",
               "What sends the closed-loop scenarios' requests: inprocess (the kit's asyncio "
               "generator, one core) or locust (a headless Locust master and its workers; "
               "same figures, JSON and gate).", metavar="{" + ",".join(LOAD_ENGINES) + "}"),
    OptionSpec("perf-locust-workers", "perf_locust_workers", _non_negative_int, 2,
               "Locust worker processes the kit starts on this machine.", metavar="N"),
    OptionSpec("perf-locust-expect-workers", "perf_locust_expect_workers", _non_negative_int, 0,
               "Workers the master waits for before it starts (0: --embedgate-perf-locust-workers); "
               "count the ones you start on other machines with "
               "`locust -f <embedgate/perf/locust_users.py> --worker --master-host HOST "
               "--master-port PORT`.", metavar="N"),
    OptionSpec("perf-locust-bind-host", "perf_locust_bind_host", str, "127.0.0.1",
               "Address the Locust master listens on for its workers (0.0.0.0 or this "
               "machine's address for workers on other machines).", metavar="ADDR"),
    OptionSpec("perf-locust-port", "perf_locust_port", _non_negative_int, 0,
               "Port the Locust master listens on (0: a free one; fix it for remote workers).",
               metavar="PORT"),
) + load_options.OPTIONS  # the open-loop scenario's (SLO, rates, arrivals, workload...)


@dataclass(frozen=True)
class PerfOptions:
    perf_baseline: Path | None = None
    perf_rules: tuple[Rule, ...] = field(default_factory=lambda: parse_rules(DEFAULT_RULES))
    perf_min_rounds: int = DEFAULT_MIN_ROUNDS
    perf_allow_unjudged: bool = False
    perf_rounds: int | None = None
    perf_sample_ms: float = 20.0
    perf_startup_launches: int = 0
    perf_encoding: str = "float"
    perf_soak_requests: int = 4000
    perf_soak_max_growth: int = 2**20
    perf_load_engine: str = "inprocess"
    perf_locust_workers: int = 2
    perf_locust_expect_workers: int = 0
    perf_locust_bind_host: str = "127.0.0.1"
    perf_locust_port: int = 0
    load: LoadOptions = field(default_factory=LoadOptions)
    sources: dict[str, str] = field(default_factory=dict, compare=False)


def resolve(cli: Mapping[str, Any], env: Mapping[str, str], config: Mapping[str, Any],
            base: PathBase | Path) -> PerfOptions:
    base = PathBase.of(base)
    values, sources = resolve_values(OPTIONS, cli, env, config)
    if sources["perf_rules"] == "default":
        values["perf_rules"] = _rules(values["perf_rules"])
    values["perf_baseline"] = base.resolve(values["perf_baseline"], sources["perf_baseline"])
    load = load_options.split(values, sources)
    if load.perf_workload is not None:
        path, sep, column = load.perf_workload.partition("#")
        where = base.resolve(path, sources["perf_workload"])
        load = replace(load, perf_workload=f"{where}{sep}{column}")
    return PerfOptions(**values, load=load, sources=sources)
