"""Writing the verdict's files: compare.md and compare.html for a pair of runs or several.

`embedgate compare` (the CLI) and ``pytest --embedgate-baseline`` (the plugin) both call these, so
the terminal, the exit code and the files always agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from embedgate.perf import rules as gate
from embedgate.report import html, markdown
from embedgate.verdict.compare import (DEFAULT_NOT_SHOWN, CompareInputError, compare, load_run,
                                      parse_margins)

EXIT_PASS, EXIT_FAIL, EXIT_INPUT = 0, 1, 2


def write_reports(out: Path, markdown: str, page: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, html_path = out / "compare.md", out / "compare.html"
    md.write_text(markdown, encoding="utf-8")
    html_path.write_text(page, encoding="utf-8")
    return md, html_path


def run_compare(baseline: Path, candidate: Path, *, margins: Sequence[str] = (),
                rules: Sequence[str] = gate.DEFAULT_RULES, out: Path | None = None,
                resamples: int = 1000, not_shown: str = DEFAULT_NOT_SHOWN,
                perf_allow_unjudged: bool = False) -> tuple[int, str]:
    default, per_dataset = parse_margins(margins)
    cmp = compare(baseline, candidate, margin=default, margins=per_dataset,
                  perf_rules=rules or gate.DEFAULT_RULES, n_resamples=resamples,
                  not_shown=not_shown, perf_allow_unjudged=perf_allow_unjudged)
    text = markdown.render_comparison(cmp)
    write_reports(out or Path(candidate), text, html.render_comparison(cmp))
    return (EXIT_PASS if cmp.passed else EXIT_FAIL), text


def run_models(dirs: Sequence[Path], out: Path) -> str:
    runs = [load_run(d) for d in dirs]
    text = markdown.render_runs(runs)
    write_reports(out, text, html.render_runs(runs))
    return text


def gate_against_baseline(baseline: Path, reports_dir: Path, margins: Sequence[str] = (),
                          not_shown: str = DEFAULT_NOT_SHOWN) -> tuple[int, list[str]]:
    """The pytest `--embedgate-baseline` path: compare this run's reports dir with the baseline's and
    return the exit code and the lines for the terminal summary."""
    try:
        code, text = run_compare(Path(baseline), Path(reports_dir), margins=margins,
                                 out=Path(reports_dir), not_shown=not_shown)
    except (CompareInputError, gate.RuleError) as exc:
        return EXIT_INPUT, [f"unusable input, not compared: {exc}"]
    lines = [line for line in text.splitlines() if line.startswith(("## ", "- ", "_Per dataset"))]
    lines.append(f"report: {Path(reports_dir) / 'compare.md'} and compare.html")
    return code, [line.lstrip("# ") for line in lines]


