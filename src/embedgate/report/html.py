"""The compare report as one self-contained HTML file: the Markdown's tables plus matplotlib
plots (scores with CIs, latency CDF per scenario, memory over time) inlined as PNG data URIs,
so the file opens offline and can be attached to a CI run as it is.
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

from embedgate.compare import Comparison, RunReports  # noqa: E402
from embedgate.report import sections  # noqa: E402
from embedgate.report.sections import Table  # noqa: E402

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
font-size:13px;text-align:left}th{background:#f3f3f3}.pass{color:#176f2c;font-weight:bold}
.fail{color:#b00020;font-weight:bold}img{max-width:100%;border:1px solid #eee}
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


def _table(t: Table) -> str:
    def cell(text: str, tag: str) -> str:
        cls = {"PASS": " class='pass'", "FAIL": " class='fail'"}.get(text, "")
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
    parts += [_table(t) for t in tables] + _plots(runs, labels)
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
