"""The compare report as one self-contained HTML file: the Markdown's tables plus matplotlib
plots (a forest plot of each dataset's delta against the margin, scores with CIs, latency CDF per
scenario, latency vs offered load, memory over time) inlined as PNG data URIs, so the file opens
offline and can be attached to a CI run as it is.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from embedgate.verdict.compare import Comparison, RunReports  # noqa: E402
from embedgate.report import sections  # noqa: E402
from embedgate.report.sections import Table  # noqa: E402

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
font-size:13px;text-align:left}th{background:#f3f3f3}.pass{color:#176f2c;font-weight:bold}
.fail{color:#b00020;font-weight:bold}.notshown{color:#9a6700;font-weight:bold}img{max-width:100%;border:1px solid #eee}
.verdict{padding:0.6em 1em;border-radius:6px}.verdict.pass{background:#e6f4ea}
.verdict.fail{background:#fde7ea}"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def scores_plot(runs: Sequence[RunReports], labels: Sequence[str]) -> str | None:
    names = list(dict.fromkeys(n for r in runs for n in (r.quality or {}).get("datasets", {})))
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(names) * len(runs) + 1.2))
    height = 0.8 / len(runs)
    y = np.arange(len(names))
    for i, (run, label) in enumerate(zip(runs, labels)):
        sets = (run.quality or {}).get("datasets", {})
        score = np.array([sets.get(n, {}).get("score", np.nan) or np.nan for n in names], float)
        lo = np.array([(sets.get(n, {}).get("ci") or {}).get("low") or np.nan for n in names],
                      float)
        hi = np.array([(sets.get(n, {}).get("ci") or {}).get("high") or np.nan for n in names],
                      float)
        err = np.vstack([np.clip(score - lo, 0, None), np.clip(hi - score, 0, None)])
        ax.barh(y + i * height, score, height, label=label)
        ax.errorbar(score, y + i * height, xerr=np.nan_to_num(err), fmt="none", capsize=2,
                    ecolor="#333", elinewidth=0.8)
    ax.set_yticks(y + height * (len(runs) - 1) / 2, names)
    ax.invert_yaxis()
    ax.set_xlabel("main score (Spearman / AP / nDCG@10) with 95% bootstrap CI")
    ax.axvline(0, color="#888", lw=0.8)
    ax.legend(loc="lower right")
    ax.set_title("Quality per dataset")
    return _png(fig)


FOREST_COLOURS = {"pass": "#176f2c", "worse": "#b00020", "not_shown": "#c77c00"}
FOREST_LABELS = {"pass": "pass (lower bound above -margin)",
                 "worse": "worse (regression beyond the margin, Holm)",
                 "not_shown": "not shown (CI straddles -margin)"}


def forest_plot(cmp: Comparison) -> str | None:
    """Each dataset's delta with its paired CI against its -margin line, the way a
    non-inferiority trial is read: wholly right of the line passes, wholly left is worse."""
    rows = [d for d in cmp.datasets if d.compared]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.6))
    y = np.arange(len(rows))
    seen = set()
    for i, d in enumerate(rows):
        colour = FOREST_COLOURS[d.status]
        label = FOREST_LABELS[d.status] if d.status not in seen else None
        seen.add(d.status)
        ax.errorbar(d.delta, i, xerr=[[d.delta - d.delta_ci.low], [d.delta_ci.high - d.delta]],
                    fmt="o", color=colour, capsize=3, label=label)
        ax.plot([-d.margin, -d.margin], [i - 0.4, i + 0.4], color="#b00020", lw=1.2)
        ax.annotate(f"{d.status.replace('_', ' ')}  MDE {d.mde:.3f}", (d.delta_ci.high, i),
                    xytext=(6, -3), textcoords="offset points", fontsize=8, color=colour)
    ax.axvline(0, color="#888", lw=0.8)
    ax.set_yticks(y, [f"{d.name} (n={d.n})" for d in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"candidate - baseline, paired 95% CI ({rows[0].delta_ci.method} bootstrap); "
                  f"red ticks: -margin")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28 - 0.6 / (len(rows) + 2)), ncol=3,
              fontsize=8, frameon=False)
    ax.set_title("Quality deltas against the non-inferiority margin")
    return _png(fig)


def _grid(n: int):
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def latency_cdf_plot(runs: Sequence[RunReports], labels: Sequence[str]) -> str | None:
    scenarios = [s for s in dict.fromkeys(s for r in runs for s in r.perf_figures)
                 if any(r.perf_figures.get(s, {}).get("latencies_ms_by_round") for r in runs)]
    if not scenarios:
        return None
    fig, axes = _grid(len(scenarios))
    for ax, scenario in zip(axes, scenarios):
        for run, label in zip(runs, labels):
            rounds = run.perf_figures.get(scenario, {}).get("latencies_ms_by_round") or []
            values = np.sort(np.concatenate([np.asarray(r, float) for r in rounds])) \
                if rounds else np.array([])
            if values.size:
                ax.plot(values, np.arange(1, values.size + 1) / values.size, label=label)
        ax.set_title(scenario, fontsize=9)
        ax.set_xlabel("latency (ms)", fontsize=8)
        ax.set_ylabel("fraction of requests", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Latency CDF per scenario")
    fig.tight_layout()
    return _png(fig)


def memory_plot(runs: Sequence[RunReports], labels: Sequence[str]) -> str | None:
    def series(figures):
        tl = figures.get("memory_timeline") or {}
        for key in ("vram_process_bytes", "vram_device_bytes", "rss_bytes"):
            values = tl.get(key)
            if values and any(v is not None for v in values):
                return tl.get("t_s") or [], values, key
        return None
    scenarios = [s for s in dict.fromkeys(s for r in runs for s in r.perf_figures)
                 if any(series(r.perf_figures.get(s, {})) for r in runs)]
    if not scenarios:
        return None
    fig, axes = _grid(len(scenarios))
    for ax, scenario in zip(axes, scenarios):
        kinds = set()
        for run, label in zip(runs, labels):
            found = series(run.perf_figures.get(scenario, {}))
            if found:
                t, values, kind = found
                kinds.add(kind.replace("_bytes", ""))
                ax.plot(t[:len(values)], [np.nan if v is None else v / 2**20 for v in values],
                        label=label)
        ax.set_title(scenario, fontsize=9)
        ax.set_xlabel("time in scenario (s)", fontsize=8)
        ax.set_ylabel(f"{'/'.join(sorted(kinds))} (MiB)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Server memory over time per scenario")
    fig.tight_layout()
    return _png(fig)


def _slo_bound(figures: dict, metric: str = "p95_ms") -> float | None:
    for rule in figures.get("slo") or []:
        name, sep, value = str(rule).replace(" ", "").partition("<=")
        if sep and name == metric:
            return float(value)
    return None


def load_curve_plot(runs: Sequence[RunReports], labels: Sequence[str]) -> str | None:
    """Per open-loop scenario: achieved vs offered rate, and P95 vs achieved rate with the SLO,
    the max sustainable rate and the closed-loop curve (coordinated omission shows as the gap)."""
    scenarios = [s for s in dict.fromkeys(s for r in runs for s in r.perf_figures)
                 if any(r.perf_figures.get(s, {}).get("load_curve") for r in runs)]
    if not scenarios:
        return None
    fig, axes = plt.subplots(len(scenarios), 2, figsize=(11, 3.6 * len(scenarios)),
                             squeeze=False)
    for (left, right), scenario in zip(axes, scenarios):
        for i, (run, label) in enumerate(zip(runs, labels)):
            figures = run.perf_figures.get(scenario, {})
            curve = sorted(figures.get("load_curve") or [], key=lambda p: p["offered_rps"])
            if not curve:
                continue
            color = f"C{i}"
            offered = [p["offered_rps"] for p in curve]
            achieved = [p["achieved_rps"] or np.nan for p in curve]
            p95 = [p["latency_p95_ms"] or np.nan for p in curve]
            ok = [p["sustainable"] for p in curve]
            left.plot(offered, achieved, "-o", color=color, ms=3, label=label)
            right.plot(achieved, p95, "-o", color=color, ms=3, label=f"{label} open loop")
            bad = [(a, q) for a, q, good in zip(achieved, p95, ok) if not good]
            if bad:
                right.plot(*zip(*bad), "x", color=color, ms=7)
            closed = figures.get("closed_loop_curve") or []
            if closed:
                right.plot([c["throughput_rps"] for c in closed], [c["p95_ms"] for c in closed],
                           "--s", color=color, ms=3, alpha=0.6, label=f"{label} closed loop")
            rate = figures.get("max_rate_rps_round_median")
            if rate:
                for ax in (left, right):
                    ax.axvline(rate, color=color, ls=":", lw=1)
            bound = _slo_bound(figures)
            if bound is not None:
                right.axhline(bound, color="#b00020", lw=0.8, ls="--")
        top = max((p["offered_rps"] for r in runs
                   for p in r.perf_figures.get(scenario, {}).get("load_curve") or []), default=1)
        left.plot([0, top], [0, top], color="#888", lw=0.8)
        left.set_xlabel("offered (req/s)", fontsize=8)
        left.set_ylabel("achieved (req/s)", fontsize=8)
        left.set_title(f"{scenario}: achieved vs offered", fontsize=9)
        right.set_yscale("log")
        right.set_xlabel("achieved (req/s)", fontsize=8)
        right.set_ylabel("P95 latency from scheduled send (ms)", fontsize=8)
        right.set_title(f"{scenario}: P95 vs load (x: over the SLO; dotted: max rate)",
                        fontsize=9)
        for ax in (left, right):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _table(t: Table) -> str:
    def cell(text: str, tag: str) -> str:
        word = text.split(" (")[0].split(":")[0]
        cls = {"PASS": " class='pass'", "FAIL": " class='fail'", "WORSE": " class='fail'",
               "MISSING": " class='fail'", "ERRORED": " class='fail'",
               "NOT SHOWN": " class='notshown'"}.get(word, "")
        return f"<{tag}{cls}>{html.escape(text)}</{tag}>"
    head = "".join(cell(h, "th") for h in t.header)
    body = "".join("<tr>" + "".join(cell(c, "td") for c in row) + "</tr>" for row in t.rows)
    note = f"<p><em>{html.escape(t.note)}</em></p>" if t.note else ""
    return f"<h2>{html.escape(t.title)}</h2><table><tr>{head}</tr>{body}</table>{note}"


def _page(title: str, parts: list[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def _plots(runs, labels) -> list[str]:
    out = []
    for title, uri in (("Quality", scores_plot(runs, labels)),
                       ("Latency", latency_cdf_plot(runs, labels)),
                       ("Latency vs load", load_curve_plot(runs, labels)),
                       ("Memory", memory_plot(runs, labels))):
        if uri:
            out.append(f"<h2>{title} plot</h2><img alt='{title} plot' src='{uri}'>")
    return out


def render_comparison(cmp: Comparison) -> str:
    runs = [cmp.baseline, cmp.candidate]
    labels = sections.labels_for(runs)
    verdict = "pass" if cmp.passed else "fail"
    text = (f"PASS: {labels[1]} may replace {labels[0]}" if cmp.passed else
            f"FAIL: {labels[1]} may not replace {labels[0]}")
    parts = [f"<h1>embedgate compare</h1><p class='verdict {verdict}'>{html.escape(text)}</p>"]
    failing = cmp.failing_rules()
    if failing:
        parts.append("<h2>Failing rules</h2><ul>" + "".join(
            f"<li>{html.escape(f)}</li>" for f in failing) + "</ul>")
    tables = [sections.model_table(runs, labels)]
    if cmp.datasets:
        tables.append(sections.quality_table(cmp))
    tables += [t for t in (sections.perf_table(runs, labels), sections.perf_rules_table(cmp)) if t]
    forest = forest_plot(cmp)
    parts += [_table(t) for t in tables]
    if forest:
        parts.append(f"<h2>Forest plot</h2><p>{html.escape(cmp.policy())}</p>"
                     f"<img alt='Forest plot' src='{forest}'>")
    parts += _plots(runs, labels)
    notes = cmp.notes + (cmp.perf.warnings if cmp.perf else [])
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
                     + "</ul>")
    return _page("embedgate compare", parts)


def render_runs(runs: Sequence[RunReports]) -> str:
    labels = sections.labels_for(runs)
    tables = [sections.model_table(runs, labels), sections.runs_quality_table(runs, labels)]
    perf = sections.perf_table(runs, labels)
    if perf is not None:
        tables.append(perf)
    return _page("embedgate runs", [f"<h1>embedgate: {len(runs)} runs side by side</h1>"]
                 + [_table(t) for t in tables] + _plots(runs, labels))
