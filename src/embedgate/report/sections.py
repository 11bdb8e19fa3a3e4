"""The content of a compare report as plain tables, rendered by markdown.py and html.py alike.

A table is (title, header, rows) of strings; the renderers only decide the markup, so the PR
comment and the HTML page always say the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from embedgate.verdict.compare import Comparison, RunReports


@dataclass(frozen=True)
class Table:
    title: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    note: str = ""


def num(value: Any, fmt: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, fmt)


def mib(value: Any) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f} MiB"


def with_ci(score: Any, ci: Any) -> str:
    if score is None:
        return "n/a"
    if not ci or ci[0] is None:
        return num(score)
    return f"{num(score)} [{num(ci[0], '.3f')}, {num(ci[1], '.3f')}]"


def _perf_value(figures: dict[str, Any], *names: str) -> Any:
    return next((figures[n] for n in names if figures.get(n) is not None), None)


def p50(f): return _perf_value(f, "latency_p50_ms_round_median", "latency_p50_ms")
def p95(f): return _perf_value(f, "latency_p95_ms_round_median", "latency_p95_ms")
def rps(f): return _perf_value(f, "throughput_rps_round_median", "throughput_rps")


def memory_at_ready(run: RunReports) -> Any:
    for figures in run.perf_figures.values():
        value = _perf_value(figures, "rss_at_ready_bytes", "vram_start_process_bytes")
        if value is not None:
            return value
    return None


def peak_memory(run: RunReports) -> Any:
    peaks = [f["peak_memory_bytes"] for f in run.perf_figures.values()
             if isinstance(f.get("peak_memory_bytes"), (int, float))]
    return max(peaks) if peaks else None


def model_table(runs: Sequence[RunReports], labels: Sequence[str]) -> Table:
    def q(run, key):
        return (run.quality or {}).get(key)
    sources = {(f.get("peak_memory_source") or "") for r in runs for f in r.perf_figures.values()}
    rows = [
        ("model", *[str(q(r, "model") or "n/a") for r in runs]),
        ("profile", *[str(q(r, "profile") or "n/a") for r in runs]),
        ("backend / server", *[f"{q(r, 'backend') or 'n/a'} {q(r, 'server_version') or ''}".strip()
                               for r in runs]),
        ("dimension", *[num(q(r, "dimension"), "d") for r in runs]),
        ("max context (tokens)", *[num(q(r, "max_tokens"), "d") for r in runs]),
        ("memory at ready", *[mib(memory_at_ready(r)) for r in runs]),
        ("peak memory (" + (", ".join(sorted(s for s in sources if s)) or "n/a") + ")",
         *[mib(peak_memory(r)) for r in runs]),
    ]
    return Table("Models", ("", *labels), rows)


VERDICT_LABEL = {"pass": "PASS", "worse": "WORSE", "not_shown": "NOT SHOWN",
                 "missing": "MISSING", "errored": "ERRORED", "only_candidate": "new",
                 "not_applicable": "not applicable"}


def verdict_label(cmp: Comparison, status: str) -> str:
    """The verdict cell; a failing status says FAIL, so the report's colours follow the exit."""
    label = VERDICT_LABEL.get(status, status)
    return f"{label} (fails)" if status in cmp.failing_statuses and status != "worse" else label


def quality_table(cmp: Comparison) -> Table:
    rows = []
    for d in cmp.datasets:
        if not d.compared:
            rows.append((d.name, d.metric, num(d.baseline), num(d.candidate), "n/a", "", "", "",
                         "", verdict_label(cmp, d.status) + f": {d.detail}"))
            continue
        ci = d.delta_ci
        rows.append((d.name, d.metric, with_ci(d.baseline, d.baseline_ci),
                     with_ci(d.candidate, d.candidate_ci),
                     f"{num(d.delta, '+.4f')} [{num(ci.low, '+.3f')}, {num(ci.high, '+.3f')}]",
                     f"-{d.margin:g}", f"{d.n}", num(d.mde, ".3f"),
                     num(d.p_worse_holm, ".4f"), verdict_label(cmp, d.status)))
    return Table("Quality (non-inferiority, paired bootstrap over items)",
                 ("dataset", "metric", "baseline [95% CI]", "candidate [95% CI]",
                  "delta [paired 95% CI]", "margin", "n", "MDE (80% power)",
                  "p worse (Holm)", "verdict"), rows, cmp.policy())


def perf_table(runs: Sequence[RunReports], labels: Sequence[str]) -> Table | None:
    scenarios = list(dict.fromkeys(s for r in runs for s in r.perf_figures))
    if not scenarios:
        return None
    header = ["scenario"]
    for label in labels:
        header += [f"P50 ms ({label})", f"P95 ms ({label})", f"req/s ({label})",
                   f"peak mem ({label})"]
    rows = []
    for s in scenarios:
        row = [s]
        for run in runs:
            f = run.perf_figures.get(s, {})
            row += [num(p50(f), ".2f"), num(p95(f), ".2f"), num(rps(f), ".1f"),
                    mib(f.get("peak_memory_bytes"))]
        rows.append(tuple(row))
    return Table("Performance", tuple(header), rows,
                 "P50/P95: median over timed rounds of each round's percentile.")


def perf_rules_table(cmp: Comparison) -> Table | None:
    if cmp.perf is None:
        return None
    rows = [(f.scenario, f.rule.text, f.status.upper(), f.message()) for f in cmp.perf.findings
            if f.status != "pass"]
    passed = len(cmp.perf.of("pass"))
    return Table("Performance rules", ("scenario", "rule", "result", "detail"), rows,
                 f"{passed} checks passed; failing and not-gated checks are listed.")


def runs_quality_table(runs: Sequence[RunReports], labels: Sequence[str]) -> Table:
    names = list(dict.fromkeys(n for r in runs for n in (r.quality or {}).get("datasets", {})))
    rows = []
    for name in names:
        cells, metric = [], ""
        for run in runs:
            entry = (run.quality or {}).get("datasets", {}).get(name)
            if entry is None:
                cells.append("not run")
                continue
            metric = entry["main_metric"]
            ci = entry.get("ci") or {}
            cells.append(with_ci(entry["score"], (ci.get("low"), ci.get("high"))))
        rows.append((name, metric, *cells))
    return Table("Quality", ("dataset", "metric", *labels), rows)


def labels_for(runs: Sequence[RunReports]) -> list[str]:
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        labels = [f"{label} ({r.path.name})" for label, r in zip(labels, runs)]
    return labels
