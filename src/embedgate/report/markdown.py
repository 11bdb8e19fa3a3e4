"""The compare report as Markdown for a PR comment: verdict first, then the tables."""

from __future__ import annotations

from typing import Sequence

from embedgate.verdict.compare import Comparison, RunReports
from embedgate.report import sections
from embedgate.report.sections import Table


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(t: Table) -> list[str]:
    lines = [f"### {t.title}", ""]
    if not t.rows:
        return lines + ["(none)", ""] + ([t.note, ""] if t.note else [])
    lines.append("| " + " | ".join(_cell(h) for h in t.header) + " |")
    lines.append("|" + "|".join("---" for _ in t.header) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    return lines + [""] + ([f"_{t.note}_", ""] if t.note else [])


def verdict_line(cmp: Comparison, labels: Sequence[str]) -> str:
    base, cand = labels
    if cmp.passed:
        return f"## embedgate: PASS, `{cand}` may replace `{base}`"
    return (f"## embedgate: FAIL, `{cand}` may not replace `{base}` "
            f"({len(cmp.failing_rules())} failing rule(s))")


def render_comparison(cmp: Comparison) -> str:
    runs = [cmp.baseline, cmp.candidate]
    labels = sections.labels_for(runs)
    lines = [verdict_line(cmp, labels), ""]
    if cmp.datasets:
        lines += [f"_{cmp.policy()}_", ""]
    failing = cmp.failing_rules()
    if failing:
        lines += ["### Failing rules", ""] + [f"- {_cell(f)}" for f in failing] + [""]
    lines += table(sections.model_table(runs, labels))
    if cmp.datasets:
        lines += table(sections.quality_table(cmp))
    for extra in (sections.perf_table(runs, labels), sections.perf_rules_table(cmp)):
        if extra is not None:
            lines += table(extra)
    notes = cmp.notes + (cmp.perf.warnings if cmp.perf else [])
    if notes:
        lines += ["### Notes", ""] + [f"- {_cell(n)}" for n in notes] + [""]
    lines.append(f"_baseline: {cmp.baseline.path}, candidate: {cmp.candidate.path}_")
    return "\n".join(lines) + "\n"


def render_runs(runs: Sequence[RunReports]) -> str:
    labels = sections.labels_for(runs)
    lines = [f"## embedgate: {len(runs)} runs side by side", ""]
    lines += table(sections.model_table(runs, labels))
    lines += table(sections.runs_quality_table(runs, labels))
    perf = sections.perf_table(runs, labels)
    if perf is not None:
        lines += table(perf)
    return "\n".join(lines) + "\n"
