"""The terminal table printed at the end of a quality run."""

from __future__ import annotations

from typing import Iterable

from embedgate.report.sections import num


def quality_table(results: Iterable) -> list[str]:
    rows = [("dataset", "task", "metric", "score", "95% CI", "BM25", "n", "threshold", "result")]
    for r in results:
        ci = f"{num(r.ci.low)}-{num(r.ci.high)}"
        bm25 = num(r.baseline_bm25.get(r.main_metric)) if r.baseline_bm25 else ""
        verdict = {True: "PASS", False: "FAIL", None: "no threshold"}[r.passed]
        rows.append((r.name, r.kind, r.main_metric, num(r.score), ci, bm25, str(r.n),
                     "" if r.threshold is None else f"{r.threshold:g}", verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines
