"""One session's perf results: each scenario's figures, the baseline and the gate verdict.

The gate is evaluated once, lazily: from pytest-benchmark's JSON hook when a JSON file is written
(so the verdict lands in the file), else at session end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from embedgate.perf.rules import (Baseline, GateReport, evaluate, machine_differences,
                                  nothing_judged)
from embedgate.perf.options import PerfOptions

SCHEMA_VERSION = 1
SUMMARY_COLUMNS = ("scenario", "p50 ms", "p95 ms", "p99 ms", "max ms", "req/s", "tokens/s",
                   "peak memory", "rounds", "p95 spread")


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _mib(value: Any) -> str:
    return "-" if value is None else f"{value / 2**20:.0f} MiB"


def capacity_line(name: str, f: Mapping[str, Any]) -> str:
    """The open-loop capacity verdict in one line: max sustainable rate, repeats, goodput."""
    rounds = ", ".join(f"{v:.1f}" for v in f.get("max_rate_rps_rounds") or [])
    spread = f.get("max_rate_rps_round_spread_pct")
    goodput = f.get("goodput_rps_round_median")
    bound = " (a lower bound: never saturated)" if f.get("max_rate_is_lower_bound") else ""
    return (f"{name}: max sustainable rate {f['max_rate_rps_round_median']:.1f} req/s{bound} "
            f"under {', '.join(f.get('slo') or [])} (searches {rounds}"
            + (f"; spread {spread:.0f}%" if spread is not None else "") + "), goodput "
            + (f"{goodput:.1f}" if goodput is not None else "-") + " req/s; closed-loop "
            f"capacity {_fmt(f.get('closed_loop_capacity_rps'), '.1f')} req/s")


@dataclass
class PerfRun:
    options: PerfOptions
    baseline: Baseline | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    server_used_before_cold: bool = False
    unmeasured: str = ""  # why perf tests ran without measuring (pytest-benchmark off or missing)
    _report: GateReport | None = None
    _evaluated: bool = False

    def record(self, scenario: str, figures: Mapping[str, Any]) -> None:
        self.results[scenario] = dict(figures)

    def gate(self, machine_info: Mapping[str, Any] | None = None,
             compared: Baseline | None = None) -> GateReport | None:
        """The verdict against the baseline (or the --benchmark-compare run); None without one."""
        if self._evaluated:
            return self._report
        baseline = self.baseline or compared
        if baseline is not None and (self.results or self.unmeasured):
            report = evaluate(baseline.figures, self.results, self.options.perf_rules,
                              min_rounds=self.options.perf_min_rounds,
                              allow_unjudged=self.options.perf_allow_unjudged)
            if self.unmeasured and self.options.perf_rules:
                report.findings.append(nothing_judged(self.unmeasured))
            report.warnings[:0] = [f"baseline from a different machine: {d}"
                                   for d in machine_differences(baseline.machine_info,
                                                                machine_info)]
            self._report = report
        self._evaluated = True
        return self._report

    @property
    def gate_source(self) -> str | None:
        return self.baseline.path if self.baseline else None

    def json_section(self) -> dict[str, Any]:
        report = self._report
        return {"schema_version": SCHEMA_VERSION,
                "options": {"rules": [r.text for r in self.options.perf_rules],
                            "min_rounds": self.options.perf_min_rounds,
                            "allow_unjudged": self.options.perf_allow_unjudged,
                            "rounds": self.options.perf_rounds,
                            "sample_ms": self.options.perf_sample_ms,
                            "encoding_format": self.options.perf_encoding,
                            "baseline": str(self.options.perf_baseline)
                            if self.options.perf_baseline else None},
                "gate": report.as_dict() if report else None,
                "notes": list(self.notes)}

    def summary_lines(self) -> list[str]:
        rows = [SUMMARY_COLUMNS]
        for name, f in self.results.items():
            rows.append((name, _fmt(f.get("latency_p50_ms"), ".2f"),
                         _fmt(f.get("latency_p95_ms"), ".2f"), _fmt(f.get("latency_p99_ms"), ".2f"),
                         _fmt(f.get("latency_max_ms"), ".2f"), _fmt(f.get("throughput_rps"), ".1f"),
                         _fmt(f.get("tokens_per_s"), ".0f"), _mib(f.get("peak_memory_bytes")),
                         str(f.get("rounds", "-")),
                         _fmt(f.get("latency_p95_ms_round_spread_pct"), ".1f") + "%"
                         if f.get("latency_p95_ms_round_spread_pct") is not None else "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(SUMMARY_COLUMNS))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
        sources = sorted({f.get("peak_memory_source") for f in self.results.values()} - {None})
        lines += [f"peak memory: {s}" for s in sources]
        vram = sorted({f.get("vram_null_reason") for f in self.results.values()} - {None})
        lines += [f"VRAM: null ({r})" for r in vram]
        lines += [capacity_line(name, f) for name, f in self.results.items()
                  if f.get("max_rate_rps_round_median") is not None]
        return lines + self.notes

