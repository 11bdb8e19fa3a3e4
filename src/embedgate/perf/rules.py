"""Perf gate: compare per-scenario figures with a baseline under rules like ``p95_ms:+10%``.

A plain library (no pytest): the perf plugin evaluates it at session end, and the model-compare
command reuses it. Figures are dicts of numbers per scenario id, as the perf suite stores them in
each pytest-benchmark entry's ``extra_info``.

Rule grammar: ``[SCENARIO:]METRIC:[+|-]N[%]``. ``+`` means a rise of more than N fails (latency,
memory), ``-`` a fall of more than N fails (throughput); without a sign the metric's own direction
is used. With ``%`` N is relative to the baseline, without it N is absolute in the metric's unit
(ms, bytes...).
METRIC is a short name (``p95_ms``) or any numeric ``extra_info`` field. SCENARIO is an optional
glob (``concurrency/*``); for a scenario it matches, a scoped rule replaces the unscoped rules of
the same metric, so one noisy scenario can get its own tolerance.

Noise: the short latency names mean the *median over timed rounds* of each round's percentile, and
a round-median figure is only gated when both runs have at least ``min_rounds`` rounds. A verdict
notes when other processes kept the machine busy (``foreign_cpu_pct``) in either run. A scenario
whose figures say ``gate_skip_reason`` (the kit's own client cost) is judged only by scoped rules.

Fail closed: a rule that cannot be judged (a figure missing or null, fewer rounds than the
minimum, figures of different kinds, nothing measured at all) is ``unjudged``, and an unjudged
finding fails the gate unless the user allowed it (``allow_unjudged``). Only a scenario whose own
design gives one sample per run (its figures say ``round_median_not_gated``, as startup does) is
left out of round-median rules without failing.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

DEFAULT_RULES = ("p95_ms:+10%", "peak_memory_bytes:+10%", "capacity/*:max_rate_rps:-10%")
DEFAULT_MIN_ROUNDS = 3

ALIASES = {
    "p50_ms": "latency_p50_ms_round_median",
    "p90_ms": "latency_p90_ms_round_median",
    "p95_ms": "latency_p95_ms_round_median",
    "p99_ms": "latency_p99_ms_round_median",
    "max_ms": "latency_max_ms",
    "throughput_rps": "throughput_rps_round_median",
    "tokens_per_s": "tokens_per_s_round_median",
    "inputs_per_s": "inputs_per_s_round_median",
    "max_rate_rps": "max_rate_rps_round_median",   # the capacity scenario's repeated searches
    "goodput_rps": "goodput_rps_round_median",
}
# A figure is only comparable when the named field is equal in both runs (same kind of memory).
COMPARABLE_ONLY_WITH = {"peak_memory_bytes": "peak_memory_source"}
# Above this much CPU used by other processes (% of one core), a verdict says the machine was busy.
BUSY_MACHINE_PCT = 20.0
# A scenario whose figures carry this field is judged only by rules that name it (scoped rules).
NOT_GATED_FIELD = "gate_skip_reason"
# A scenario whose design has one sample per run says so here: round medians are not gated on it.
SINGLE_SAMPLE_FIELD = "round_median_not_gated"
ROUND_MEDIAN = "_round_median"

_RULE = re.compile(r"^\s*(?:(?P<scope>[^:\s]+)\s*:\s*)?"
                   r"(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*:\s*(?P<sign>[+-]?)\s*"
                   r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<pct>%?)\s*$")


class RuleError(ValueError):
    """A rule that cannot be parsed or has no direction; the message shows the grammar."""


def field_for(metric: str) -> str:
    return ALIASES.get(metric, metric)


def higher_is_worse(field_name: str) -> bool | None:
    """Latency, time and memory get worse upwards; rates downwards; None when unknown."""
    base = field_name[: -len(ROUND_MEDIAN)] if field_name.endswith(ROUND_MEDIAN) else field_name
    if base.endswith(("_rps", "_per_s", "_ratio")):
        return False
    if base.endswith(("_ms", "_us", "_s", "_bytes", "_pct")):
        return True
    return None


# How a figure is shown, by the suffix of its name (the first suffix that matches wins).
UNIT_FORMATS = (("_bytes", lambda v: f"{v / 2**20:.1f} MiB"), ("_ms", lambda v: f"{v:.2f} ms"),
                ("_us", lambda v: f"{v:.1f} us"), ("_rps", lambda v: f"{v:.1f} req/s"),
                ("_per_s", lambda v: f"{v:.1f}/s"), ("_s", lambda v: f"{v:.2f} s"))


def format_value(field_name: str, value: float) -> str:
    base = field_name[: -len(ROUND_MEDIAN)] if field_name.endswith(ROUND_MEDIAN) else field_name
    show = next((fmt for suffix, fmt in UNIT_FORMATS if base.endswith(suffix)), None)
    return show(value) if show else f"{value:g}"


@dataclass(frozen=True)
class Rule:
    """One gate rule; ``limit(baseline)`` is the worst value that still passes."""

    metric: str
    amount: float
    relative: bool
    rise_fails: bool
    text: str
    scope: str | None = None

    @property
    def field(self) -> str:
        return field_for(self.metric)

    def applies_to(self, scenario: str) -> bool:
        return self.scope is None or fnmatch.fnmatchcase(scenario, self.scope)

    def limit(self, baseline: float) -> float:
        delta = abs(baseline) * self.amount / 100.0 if self.relative else self.amount
        return baseline + delta if self.rise_fails else baseline - delta

    def fails(self, baseline: float, current: float) -> bool:
        limit = self.limit(baseline)
        return current > limit if self.rise_fails else current < limit


def parse_rule(text: str) -> Rule:
    match = _RULE.match(text)
    if not match:
        raise RuleError(f"rule {text!r}: expected [SCENARIO:]METRIC:[+|-]N[%], e.g. "
                        f"p95_ms:+10%, peak_memory_bytes:+10%, throughput_rps:-10%, p95_ms:+2 "
                        f"(ms), concurrency/*:p95_ms:+25%")
    metric, sign = match["metric"], match["sign"]
    if sign:
        rise_fails = sign == "+"
    else:
        natural = higher_is_worse(field_for(metric))
        if natural is None:
            raise RuleError(f"rule {text!r}: {metric!r} has no known direction; write "
                            f"{metric}:+N% (a rise fails) or {metric}:-N% (a fall fails)")
        rise_fails = natural
    return Rule(metric, float(match["amount"]), bool(match["pct"]), rise_fails, text.strip(),
                match["scope"])


def parse_rules(texts: Iterable[str]) -> tuple[Rule, ...]:
    return tuple(parse_rule(t) for t in texts)


@dataclass(frozen=True)
class Finding:
    scenario: str
    rule: Rule
    status: str                      # "pass" | "fail" | "unjudged" | "skip" (by design only)
    baseline: float | None = None
    current: float | None = None
    reason: str = ""
    note: str = ""

    @property
    def change_pct(self) -> float | None:
        if self.baseline in (None, 0) or self.current is None:
            return None
        return (self.current - self.baseline) / abs(self.baseline) * 100.0

    def message(self) -> str:
        rule, name = self.rule, self.rule.field
        if self.status == "skip":
            return f"{self.scenario}: {rule.metric} not gated: {self.reason}"
        if self.status == "unjudged":
            return f"{self.scenario}: {rule.metric} UNJUDGED: {self.reason}"
        base, now = format_value(name, self.baseline), format_value(name, self.current)
        change = f" ({self.change_pct:+.1f}%)" if self.change_pct is not None else ""
        bound = "at most" if rule.rise_fails else "at least"
        verdict = "FAILED" if self.status == "fail" else "ok"
        note = f" ({self.note})" if self.note else ""
        return (f"{self.scenario}: {rule.metric} {verdict}: baseline {base}, now {now}{change}; "
                f"rule {rule.text} allows {bound} {format_value(name, rule.limit(self.baseline))}"
                f"{note}")

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "rule": self.rule.text, "metric": self.rule.metric,
                "field": self.rule.field, "status": self.status, "baseline": self.baseline,
                "current": self.current, "change_pct": self.change_pct,
                "limit": None if self.baseline is None else self.rule.limit(self.baseline),
                "reason": self.reason, "note": self.note, "message": self.message()}


@dataclass
class GateReport:
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    allow_unjudged: bool = False

    def of(self, status: str) -> list[Finding]:
        return [f for f in self.findings if f.status == status]

    @property
    def failures(self) -> list[Finding]:
        """Failing findings, and unjudged ones unless the user allowed them."""
        return self.of("fail") + ([] if self.allow_unjudged else self.of("unjudged"))

    @property
    def ok(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        fails, skips, passes = self.of("fail"), self.of("skip"), self.of("pass")
        unjudged = self.of("unjudged")
        head = (f"perf gate: {len(fails)} failed, {len(passes)} passed, {len(unjudged)} unjudged"
                f"{' (allowed)' if unjudged and self.allow_unjudged else ''}, {len(skips)} not "
                f"gated ({len(self.findings)} checks)")
        mark = "allowed" if self.allow_unjudged else "FAIL"
        return ([head] + [f"FAIL {f.message()}" for f in fails]
                + [f"{mark} {f.message()}" for f in unjudged]
                + [f"warning: {w}" for w in self.warnings]
                + [f"skip {f.message()}" for f in skips] + [f"note: {n}" for n in self.notes]
                + [f"pass {f.message()}" for f in passes])

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "allow_unjudged": self.allow_unjudged,
                "findings": [f.as_dict() for f in self.findings],
                "warnings": list(self.warnings), "notes": list(self.notes)}


def _number(figures: Mapping[str, Any], name: str) -> float | None:
    value = figures.get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _why_missing(figures: Mapping[str, Any], name: str, run: str) -> str:
    """The reason the figures give for a null (its own, or its family's), else 'not there'."""
    keys = [f"{name}_null_reason"]
    keys += ["peak_memory_null_reason"] if "memory" in name else []
    keys += ["vram_process_null_reason", "vram_null_reason"] if "vram" in name else []
    for key in keys:
        if figures.get(key):
            return f"{name} is null in the {run} run: {figures[key]}"
    return f"{name} is not in the {run} run's figures"


def check(scenario: str, rule: Rule, baseline: Mapping[str, Any], current: Mapping[str, Any],
          *, min_rounds: int = DEFAULT_MIN_ROUNDS) -> Finding:
    """One rule on one scenario: pass, fail, unjudged with the reason it could not be judged, or
    skip where the scenario's design has one sample per run and the rule is a round median."""
    name = rule.field
    design = current.get(SINGLE_SAMPLE_FIELD) or baseline.get(SINGLE_SAMPLE_FIELD)
    if name.endswith(ROUND_MEDIAN) and design and rule.scope is None:
        return Finding(scenario, rule, "skip", reason=str(design))
    base, now = _number(baseline, name), _number(current, name)
    if base is None or now is None:
        run, figs = ("baseline", baseline) if base is None else ("current", current)
        return Finding(scenario, rule, "unjudged", base, now, _why_missing(figs, name, run))
    if name.endswith(ROUND_MEDIAN):
        for run, figs in (("baseline", baseline), ("current", current)):
            rounds = int(_number(figs, "rounds") or 0)
            if rounds < min_rounds:
                return Finding(scenario, rule, "unjudged", base, now,
                               f"{rounds} timed round(s) in the {run} run, the gate needs at "
                               f"least {min_rounds}")
    guard = COMPARABLE_ONLY_WITH.get(name)
    if guard and baseline.get(guard) != current.get(guard):
        return Finding(scenario, rule, "unjudged", base, now,
                       f"not comparable: baseline measured {baseline.get(guard)!r}, this run "
                       f"{current.get(guard)!r}")
    status = "fail" if rule.fails(base, now) else "pass"
    notes = [busy_note(baseline, current)] + ([noise_note(rule, baseline, current)]
                                               if status == "fail" else [])
    return Finding(scenario, rule, status, base, now, note="; ".join(n for n in notes if n))


def noise_note(rule: Rule, baseline: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """Say so when the scenario's own rounds spread wider than the rule allows."""
    if not (rule.relative and rule.field.endswith(ROUND_MEDIAN)):
        return ""
    spread_field = rule.field[: -len(ROUND_MEDIAN)] + "_round_spread_pct"
    spreads = [v for v in (_number(baseline, spread_field), _number(current, spread_field))
               if v is not None]
    if not spreads or max(spreads) <= rule.amount:
        return ""
    return (f"its rounds spread up to {max(spreads):.0f}% within a run: the rule is tighter "
            f"than this scenario's noise")


def busy_note(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """Say so when other processes kept the machine busy during either run of a scenario."""
    loads = {run: _number(figs, "foreign_cpu_pct") for run, figs in
             (("the baseline", baseline), ("this run", current))}
    busy = {run: pct for run, pct in loads.items() if pct is not None and pct > BUSY_MACHINE_PCT}
    if not busy:
        return ""
    shown = " and ".join(f"{pct:.0f}% of a core in {run}" for run, pct in busy.items())
    return f"machine busy: other processes used {shown}"


def rules_for(scenario: str, rules: Iterable[Rule], *, scoped_only: bool = False) -> list[Rule]:
    """The rules that judge `scenario`: scoped ones replace unscoped ones of the same metric.
    scoped_only: only rules that name the scenario (for scenarios not gated by default)."""
    matching = [r for r in rules if r.applies_to(scenario) and (r.scope or not scoped_only)]
    scoped_fields = {r.field for r in matching if r.scope is not None}
    return [r for r in matching if r.scope is not None or r.field not in scoped_fields]


def evaluate(baseline: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]],
             rules: Iterable[Rule], *, min_rounds: int = DEFAULT_MIN_ROUNDS,
             allow_unjudged: bool = False) -> GateReport:
    """Every rule on every scenario present in both runs; the rest become warnings. A run with
    rules but no scenario in common with the baseline judged nothing: one unjudged finding."""
    rules = tuple(rules)
    report = GateReport(allow_unjudged=allow_unjudged)
    for scenario in current:
        if scenario not in baseline:
            report.warnings.append(f"{scenario}: not in the baseline, nothing to compare")
            continue
        skip_reason = current[scenario].get(NOT_GATED_FIELD)
        chosen = rules_for(scenario, rules, scoped_only=bool(skip_reason))
        if skip_reason and not chosen:
            report.notes.append(f"{scenario}: not gated by default: {skip_reason}")
        for rule in chosen:
            report.findings.append(check(scenario, rule, baseline[scenario], current[scenario],
                                         min_rounds=min_rounds))
    for scenario in baseline:
        if scenario not in current:
            report.warnings.append(f"{scenario}: in the baseline but not run now")
    if rules and not report.findings and not report.notes:
        report.findings.append(nothing_judged(
            f"no scenario of this run ({len(current)}) is in the baseline ({len(baseline)})"))
    return report


def nothing_judged(why: str) -> Finding:
    """The finding of a gate that had rules and a baseline but judged nothing."""
    return Finding("(all)", Rule("any", 0.0, True, True, "any rule"), "unjudged",
                   reason=f"nothing was judged: {why}")


@dataclass(frozen=True)
class Baseline:
    path: str
    figures: dict[str, dict[str, Any]]
    machine_info: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def figures_from_benchmark_json(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Scenario id -> extra_info, from a pytest-benchmark JSON (--benchmark-json or a saved run).

    The kit names each scenario in ``extra_info["scenario"]``; other benchmarks use their name.
    """
    out: dict[str, dict[str, Any]] = {}
    for bench in doc.get("benchmarks", []):
        info = dict(bench.get("extra_info") or {})
        out[str(info.get("scenario") or bench.get("name"))] = info
    return out


def load_baseline(path: str | Path) -> Baseline:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise RuleError(f"baseline {path} not found") from None
    except (OSError, ValueError) as exc:
        raise RuleError(f"baseline {path} is not a pytest-benchmark JSON file: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise RuleError(f"baseline {path} has no 'benchmarks' list: not a pytest-benchmark "
                        f"JSON file (write one with --benchmark-json=PATH)")
    return Baseline(str(path), figures_from_benchmark_json(doc), doc.get("machine_info"),
                    {k: v for k, v in doc.items() if k.startswith("embedgate")})


MACHINE_KEYS = (("node", "host"), ("machine", "architecture"), ("system", "OS"),
                ("python_version", "Python"))


def machine_differences(baseline: Mapping[str, Any] | None,
                        current: Mapping[str, Any] | None) -> list[str]:
    """What differs between the machines two runs were made on (a warning, not a failure)."""
    if not baseline or not current:
        return []
    out = [f"{label}: baseline {baseline.get(key)!r}, now {current.get(key)!r}"
           for key, label in MACHINE_KEYS if baseline.get(key) != current.get(key)]
    for key, label in (("brand_raw", "CPU"), ("count", "CPU count")):
        old, new = (baseline.get("cpu") or {}).get(key), (current.get("cpu") or {}).get(key)
        if old != new:
            out.append(f"{label}: baseline {old!r}, now {new!r}")
    return out
