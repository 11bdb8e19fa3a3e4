"""The terminal table printed at the end of a quality run, and the lines that say what failed
closed (unjudged, errored, profile errors)."""

from __future__ import annotations

from typing import Iterable

from embedgate.report.sections import num

VERDICTS = {"pass": "PASS", "fail": "FAIL", "profile_error": "PROFILE ERROR",
            "not_applicable": "not applicable", "unjudged": "UNJUDGED", "recorded": "recorded",
            "anchored": "anchor", "error": "ERROR"}


def quality_table(results: Iterable) -> list[str]:
    rows = [("dataset", "task", "metric", "score", "95% CI", "null p99", "BM25", "n", "threshold",
             "result")]
    for r in results:
        if r.status == "error":
            rows.append((r.name, r.kind, r.main_metric, "", "", "", "", "", "", "ERROR"))
            continue
        ci = f"{num(r.ci.low)}-{num(r.ci.high)}"
        bm25 = num(r.baseline_bm25.get(r.main_metric)) if r.baseline_bm25 else ""
        rows.append((r.name, r.kind, r.main_metric, num(r.score), ci,
                     num(r.null.p99) if r.null else "", bm25, str(r.n),
                     "" if r.threshold is None else f"{r.threshold:g}",
                     VERDICTS.get(r.status, r.status)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("null p99: the 99th percentile of a random encoder's score on the same set "
                 "(permutation null); a pass needs the CI's lower bound above it")
    return lines


def verdict_lines(results: Iterable) -> list[str]:
    """One line per fail-closed case, so a run that judged nothing never looks like a pass."""
    results = list(results)
    lines = []
    for status, text in (("unjudged", "unjudged (no bar, no published anchor; the session fails "
                                      "unless --embedgate-record-only)"),
                         ("profile_error", "with a bar at or below the random-encoder null "
                                           "(profile error)"),
                         ("error", "errored")):
        names = [r.name for r in results if r.status == status]
        if names:
            lines.append(f"FAIL: {len(names)} dataset(s) {text}: {', '.join(names)}")
    recorded = [r.name for r in results if r.status == "recorded"]
    if recorded:
        lines.append(f"record-only: {len(recorded)} dataset(s) scored without a verdict: "
                     f"{', '.join(recorded)}")
    skipped = [r.name for r in results if r.status == "not_applicable"]
    if skipped:
        lines.append(f"not applicable to this profile: {', '.join(skipped)}")
    return lines
