"""`embedgate compare BASELINE CANDIDATE`: the merge verdict as an exit code and a report.

Exit 0: the candidate may replace the baseline. 1: it may not (the report says which rule).
2: the inputs cannot be compared (missing file, other schema, other dataset content).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from embedgate import gate
from embedgate.compare import DEFAULT_MARGIN, CompareInputError, compare, load_run

EXIT_PASS, EXIT_FAIL, EXIT_INPUT = 0, 1, 2


def parse_margins(entries: Sequence[str]) -> tuple[float, dict[str, float]]:
    """`0.02` sets the default margin, `NAME=0.03` one dataset's."""
    default, per_dataset = DEFAULT_MARGIN, {}
    for entry in entries:
        name, _, value = entry.rpartition("=")
        try:
            margin = float(value)
        except ValueError:
            raise CompareInputError(f"margin {entry!r}: write 0.02 or DATASET=0.02") from None
        if margin < 0:
            raise CompareInputError(f"margin {entry!r} must not be negative")
        if name:
            per_dataset[name] = margin
        else:
            default = margin
    return default, per_dataset


def write_reports(out: Path, markdown: str, page: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, html_path = out / "compare.md", out / "compare.html"
    md.write_text(markdown, encoding="utf-8")
    html_path.write_text(page, encoding="utf-8")
    return md, html_path


def run_compare(baseline: Path, candidate: Path, *, margins: Sequence[str] = (),
                rules: Sequence[str] = gate.DEFAULT_RULES, out: Path | None = None,
                resamples: int = 1000) -> tuple[int, str]:
    from embedgate.report import html, markdown
    default, per_dataset = parse_margins(margins)
    cmp = compare(baseline, candidate, margin=default, margins=per_dataset,
                  perf_rules=rules or gate.DEFAULT_RULES, n_resamples=resamples)
    text = markdown.render_comparison(cmp)
    write_reports(out or Path(candidate), text, html.render_comparison(cmp))
    return (EXIT_PASS if cmp.passed else EXIT_FAIL), text


def run_models(dirs: Sequence[Path], out: Path) -> str:
    from embedgate.report import html, markdown
    runs = [load_run(d) for d in dirs]
    text = markdown.render_runs(runs)
    write_reports(out, text, html.render_runs(runs))
    return text


def gate_against_baseline(baseline: Path, reports_dir: Path,
                          margins: Sequence[str] = ()) -> tuple[int, list[str]]:
    """The pytest `--baseline` path: compare this run's reports dir with the baseline's and
    return the exit code and the lines for the terminal summary."""
    try:
        code, text = run_compare(Path(baseline), Path(reports_dir), margins=margins,
                                 out=Path(reports_dir))
    except (CompareInputError, gate.RuleError) as exc:
        return EXIT_INPUT, [f"unusable input, not compared: {exc}"]
    lines = [line for line in text.splitlines() if line.startswith(("## ", "- "))]
    lines.append(f"report: {Path(reports_dir) / 'compare.md'} and compare.html")
    return code, [line.lstrip("# ") for line in lines]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embedgate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser("compare", help="compare a candidate run with a baseline run",
                         description="Compare reports dirs (quality.json and/or perf.json). "
                                     "Exit 0 pass, 1 fail, 2 unusable input.")
    cmp.add_argument("runs", nargs="*", type=Path, metavar="DIR",
                     help="BASELINE CANDIDATE reports dirs")
    cmp.add_argument("--models", nargs="+", type=Path, metavar="DIR",
                     help="lay several runs side by side (no verdict)")
    cmp.add_argument("--margin", action="append", default=[], metavar="[DATASET=]M",
                     help=f"non-inferiority margin, default {DEFAULT_MARGIN}; repeatable, "
                          f"DATASET=M for one dataset")
    cmp.add_argument("--perf-rule", action="append", default=[], metavar="RULE",
                     help="perf rule like p95_ms:+10%% (repeatable; default "
                          + ", ".join(gate.DEFAULT_RULES).replace("%", "%%") + ")")
    cmp.add_argument("--resamples", type=int, default=1000,
                     help="paired bootstrap resamples (seed 0)")
    cmp.add_argument("--out", type=Path, help="where compare.md and compare.html go "
                                              "(default: the candidate dir)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.models:
            if args.runs:
                raise CompareInputError("give either BASELINE CANDIDATE or --models, not both")
            print(run_models(args.models, args.out or Path("reports")), end="")
            return EXIT_PASS
        if len(args.runs) != 2:
            raise CompareInputError(f"compare needs BASELINE and CANDIDATE dirs, got "
                                    f"{len(args.runs)}")
        code, text = run_compare(args.runs[0], args.runs[1], margins=args.margin,
                                 rules=args.perf_rule, out=args.out, resamples=args.resamples)
        print(text, end="")
        return code
    except (CompareInputError, gate.RuleError) as exc:
        print(f"embedgate compare: unusable input: {exc}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
