"""The open-loop options: SLO, offered rates, arrivals, workload, in-flight cap, processes.

Kit options like the others (`embedgate.config.options`): ``--embedgate-perf-*`` flags,
``EMBEDGATE_PERF_*`` environment twins and ``perf_*`` keys in ``[tool.embedgate]``; resolved with
the rest of the perf options into ``PerfOptions.load``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from embedgate.config.options import OptionSpec, int_at_least, one_of
from embedgate.perf.arrivals import ArrivalError, Arrivals, parse_arrivals
from embedgate.perf.openloop import DEFAULT_MAX_IN_FLIGHT, ON_FULL
from embedgate.perf.slo import DEFAULT_SLO, SloError, SloRule, parse_slos
from embedgate.perf.sweep import DEFAULT_FRACTIONS, DEFAULT_SEARCHES
from embedgate.perf.traffic import WorkloadError, parse_batch_mix

DEFAULT_POINT_S = 2.0


def _items(value: Any) -> list[str]:
    items = re.split(r"[,\s]+", value.strip()) if isinstance(value, str) else list(value)
    return [str(i) for i in items if str(i)]


def _slo(value: Any) -> tuple[SloRule, ...]:
    try:
        return parse_slos(_items(value))
    except SloError as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class Rates:
    """Offered rates: absolute (req/s) or fractions of the measured closed-loop capacity."""

    values: tuple[float, ...]
    of_capacity: bool

    def describe(self) -> str:
        if self.of_capacity:
            return ", ".join(f"{v * 100:g}%" for v in self.values) + " of closed-loop capacity"
        return ", ".join(f"{v:g}" for v in self.values) + " req/s"


def _rates(value: Any) -> Rates:
    """``10%,50%,100%`` (of the closed-loop capacity) or ``20,50,100`` (req/s); not mixed."""
    items = _items(value)
    if not items:
        raise ValueError("give at least one rate")
    pct = [i.endswith("%") for i in items]
    if any(pct) and not all(pct):
        raise ValueError("rates are all absolute (20,50) or all percentages of the closed-loop "
                         "capacity (25%,50%), not mixed")
    try:
        numbers = [float(i.rstrip("%")) for i in items]
    except ValueError:
        raise ValueError(f"rates must be numbers, e.g. 20,50,100 or 25%,50%,100%: {value!r}") \
            from None
    if min(numbers) <= 0:
        raise ValueError("rates must be > 0")
    if all(pct):
        return Rates(tuple(n / 100 for n in numbers), True)
    return Rates(tuple(numbers), False)


def _arrivals(value: Any) -> Arrivals:
    try:
        return parse_arrivals(str(value))
    except ArrivalError as exc:
        raise ValueError(str(exc)) from None


def _batch_mix(value: Any) -> tuple[tuple[int, float], ...]:
    try:
        return parse_batch_mix(str(value))
    except WorkloadError as exc:
        raise ValueError(str(exc)) from None


def _seconds(value: Any) -> float:
    number = float(value)
    if not 0.2 <= number <= 600:
        raise ValueError("must be between 0.2 and 600 seconds")
    return number


DEFAULT_RATES = ",".join(f"{f * 100:g}%" for f in DEFAULT_FRACTIONS)

OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("perf-slo", "perf_slo", _slo, DEFAULT_SLO,
               "SLO rule for the open-loop capacity scenario, METRIC<=VALUE with METRIC pNN_ms, "
               "latency_ms (a per-request bound: goodput), error_rate or goodput_pct "
               "(repeatable; replaces the defaults).", metavar="RULE", repeatable=True),
    OptionSpec("perf-rates", "perf_rates", _rates, DEFAULT_RATES,
               "Offered rates of the capacity sweep: req/s (20,50,100) or percentages of the "
               "measured closed-loop capacity (25%,50%,100%).", metavar="LIST"),
    OptionSpec("perf-arrivals", "perf_arrivals", _arrivals, "poisson",
               "Open-loop arrivals: poisson, constant, gamma:B (B = burstiness; 1 is Poisson, "
               "below 1 burstier) or trace (the workload's timestamps, rescaled to each rate).",
               metavar="KIND"),
    OptionSpec("perf-seed", "perf_seed", int_at_least(0), 0,
               "Seed of the arrival draws and batch mixes (the same seed sends the same requests "
               "at the same offsets).", metavar="N"),
    OptionSpec("perf-point-s", "perf_point_s", _seconds, DEFAULT_POINT_S,
               "Seconds of schedule per offered rate (requests = rate x seconds, at least 50).",
               metavar="S"),
    OptionSpec("perf-searches", "perf_searches", int_at_least(1), DEFAULT_SEARCHES,
               "Repeats of the max-sustainable-rate search (its round median is gated).",
               metavar="N"),
    OptionSpec("perf-max-in-flight", "perf_max_in_flight", int_at_least(1), DEFAULT_MAX_IN_FLIGHT,
               "Cap on open-loop requests in flight.", metavar="N"),
    OptionSpec("perf-on-full", "perf_on_full", one_of(*ON_FULL), "queue",
               "A request due while the cap is full waits for a slot (queue: sent late, "
               "counted) or is dropped (drop: counted as failed).", metavar="{queue,drop}"),
    OptionSpec("perf-processes", "perf_processes", int_at_least(1), 1,
               "Load-generator processes sharing one open-loop schedule (Linux).", metavar="N"),
    OptionSpec("perf-workload", "perf_workload", str, None,
               "Requests for the open-loop scenario: a .jsonl of {\"input\": ...} (optional "
               "\"timestamp\" in ms for trace replay) or a .tsv/.csv/.txt of texts (PATH#COLUMN); "
               "default: the kit's short synthetic texts.", metavar="PATH"),
    OptionSpec("perf-batch-mix", "perf_batch_mix", _batch_mix, "1",
               "Inputs per open-loop request: a size (8) or sizes with weights (1:0.8,8:0.2).",
               metavar="MIX"),
    OptionSpec("perf-metrics", "perf_metrics", one_of("on", "off"), "on",
               "Scrape the server's Prometheus /metrics during each open-loop point.",
               metavar="{on,off}"),
)


@dataclass(frozen=True)
class LoadOptions:
    perf_slo: tuple[SloRule, ...] = field(default_factory=lambda: parse_slos(DEFAULT_SLO))
    perf_rates: Rates = field(default_factory=lambda: _rates(DEFAULT_RATES))
    perf_arrivals: Arrivals = field(default_factory=Arrivals)
    perf_seed: int = 0
    perf_point_s: float = DEFAULT_POINT_S
    perf_searches: int = DEFAULT_SEARCHES
    perf_max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    perf_on_full: str = "queue"
    perf_processes: int = 1
    perf_workload: str | None = None
    perf_batch_mix: tuple[tuple[int, float], ...] = ((1, 1.0),)
    perf_metrics: str = "on"

    def as_dict(self) -> dict[str, Any]:
        return {"slo": [r.text for r in self.perf_slo], "rates": self.perf_rates.describe(),
                "arrivals": self.perf_arrivals.kind,
                "burstiness": self.perf_arrivals.burstiness, "seed": self.perf_seed,
                "point_s": self.perf_point_s, "searches": self.perf_searches,
                "max_in_flight": self.perf_max_in_flight, "on_full": self.perf_on_full,
                "processes": self.perf_processes, "workload": self.perf_workload,
                "batch_mix": [list(p) for p in self.perf_batch_mix],
                "metrics": self.perf_metrics}


def split(values: dict[str, Any], sources: dict[str, str]) -> LoadOptions:
    """Take this module's values out of the resolved perf values (defaults parsed here, as
    the option system leaves them as written)."""
    mine = {spec.dest: values.pop(spec.dest) for spec in OPTIONS}
    for spec in OPTIONS:
        if sources.get(spec.dest) == "default" and spec.default is not None:
            mine[spec.dest] = spec.parse(spec.default)
    return LoadOptions(**mine)
