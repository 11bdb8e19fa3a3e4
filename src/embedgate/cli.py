"""`embedgate compare BASELINE CANDIDATE`: the merge verdict as an exit code and a report.
`embedgate benchmarks download DIR [NAMES]` fills a benchmark mirror for an offline runner,
`embedgate benchmarks list` shows what a profile would run and whether a mirror holds it,
`embedgate benchmarks anchors RESULTS MODEL` prints a profile's [published] table, and
`embedgate calibrate REPORTS --profile P` writes bars for a new model from a measured run.

Exit 0: the candidate may replace the baseline. 1: it may not (the report says which rule).
2: the inputs cannot be compared (missing file, other schema, other dataset content).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from embedgate.perf import rules as gate
from embedgate.report.files import EXIT_INPUT, EXIT_PASS, run_compare, run_models
from embedgate.verdict.compare import (DEFAULT_MARGIN, DEFAULT_NOT_SHOWN, NOT_SHOWN_POLICIES,
                                      CompareInputError)


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
    cmp.add_argument("--not-shown", choices=NOT_SHOWN_POLICIES, default=DEFAULT_NOT_SHOWN,
                     help="what a dataset whose CI is too wide to tell (neither pass nor worse) "
                          f"does to the verdict; default {DEFAULT_NOT_SHOWN} (a pass is a claim)")
    cmp.add_argument("--perf-allow-unjudged", action="store_true",
                     help="let perf rules that could not be judged (figure missing, too few "
                          "rounds) pass instead of failing")
    cmp.add_argument("--resamples", type=int, default=1000,
                     help="paired bootstrap resamples (seed 0)")
    cmp.add_argument("--out", type=Path, help="where compare.md and compare.html go "
                                              "(default: the candidate dir)")
    add_benchmark_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("benchmarks", "calibrate"):
        return run_benchmark_command(args)
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
                                 rules=args.perf_rule, out=args.out, resamples=args.resamples,
                                 not_shown=args.not_shown,
                                 perf_allow_unjudged=args.perf_allow_unjudged)
        print(text, end="")
        return code
    except (CompareInputError, gate.RuleError) as exc:
        print(f"embedgate compare: unusable input: {exc}", file=sys.stderr)
        return EXIT_INPUT


def add_benchmark_commands(sub: Any) -> None:
    bench = sub.add_parser("benchmarks", help="MTEB benchmark data and published anchors")
    cmds = bench.add_subparsers(dest="benchmark_command", required=True)
    dl = cmds.add_parser("download", help="fetch the pinned dataset revisions into a mirror",
                         description="Fetch, from the Hugging Face hub, every dataset repository "
                                     "the benchmarks need at mteb's pinned revision into "
                                     "DIR/<dataset id>/<revision>/ (copy DIR to an offline "
                                     "runner and pass --embedgate-benchmark-mirror DIR).")
    dl.add_argument("dir", type=Path, metavar="DIR")
    listing = cmds.add_parser("list", help="the benchmarks a profile runs, and their data")
    for cmd in (dl, listing):
        cmd.add_argument("names", nargs="*", metavar="NAME[:SPLIT[:SUBSETS]]",
                         help="benchmarks (default: every one the profiles have a published "
                              "score for; `profile` for those of --profile)")
        cmd.add_argument("--profile", action="append", default=[], metavar="NAME_OR_PATH",
                         help="profile(s) whose published benchmarks `profile` means "
                              "(default: every shipped profile)")
    listing.add_argument("--mirror", type=Path, metavar="DIR", help="say whether DIR holds each")
    anchors = cmds.add_parser("anchors", help="print a profile's [published] table")
    anchors.add_argument("results", type=Path, metavar="RESULTS_JSON",
                         help="published scores (models -> task -> split -> subset)")
    anchors.add_argument("model", metavar="HF_ID")
    anchors.add_argument("--tolerance", type=float, required=True)
    anchors.add_argument("--note", default="", help="why this tolerance (a comment)")
    cal = sub.add_parser("calibrate", help="bars for a model's profile from a measured run",
                         description="Write the profile with its [thresholds] replaced by bars "
                                     "from REPORTS/quality.json: score minus margin, above a "
                                     "random-encoder null.")
    cal.add_argument("reports", type=Path, metavar="REPORTS_DIR")
    cal.add_argument("--profile", required=True, metavar="NAME_OR_PATH")
    cal.add_argument("--margin", type=float, default=0.05)
    cal.add_argument("--out", type=Path, help="the new profile (default: print it)")


def _benchmark_specs(names: Sequence[str], profiles: Sequence[str]):
    from embedgate.models.profiles import available_profiles, load_profile
    from embedgate.quality.anchors import profile_anchors
    from embedgate.quality.benchmarks import BenchmarkData, resolve_benchmarks, selections_from
    from embedgate.quality.mirror import DataLocator

    published: list[str] = []
    for name in profiles or available_profiles():
        published += profile_anchors(load_profile(name))
    data = BenchmarkData(DataLocator())
    return resolve_benchmarks(selections_from(list(names) or ["profile"],
                                              dict.fromkeys(published)), data), data


def run_benchmark_command(args: argparse.Namespace) -> int:
    from embedgate.models.profiles import ProfileError, load_profile
    from embedgate.quality import mirror
    from embedgate.quality.anchors import AnchorError, published_table, read_results
    from embedgate.quality.benchmarks import BenchmarkError
    from embedgate.quality.calibrate import calibrated_profile
    from embedgate.quality.results_json import read_quality_json

    try:
        if args.command == "calibrate":
            document = read_quality_json(args.reports / "quality.json")
            profile = load_profile(args.profile)
            text, bars = calibrated_profile(document, profile.path, margin=args.margin,
                                            source=str(args.reports / "quality.json"))
            if args.out:
                args.out.write_text(text, encoding="utf-8")
                print(f"wrote {args.out}: {sum(b.bar is not None for b in bars)} bars, "
                      f"{sum(b.bar is None for b in bars)} datasets without one")
            else:
                print(text, end="")
            return EXIT_PASS
        if args.benchmark_command == "anchors":
            print(published_table(read_results(args.results), args.model,
                                  tolerance=args.tolerance, tolerance_note=args.note), end="")
            return EXIT_PASS
        specs, data = _benchmark_specs(args.names, args.profile)
        for note in data.notes:
            print(f"note: {note}", file=sys.stderr)
        targets = list(dict.fromkeys((s.dataset_id, s.revision) for s in specs))
        if args.benchmark_command == "list":
            for spec in specs:
                held = ""
                if args.mirror is not None:
                    there = mirror.mirror_path(args.mirror, spec.dataset_id, spec.revision)
                    held = ("  repository in mirror" if there.is_dir()
                        else "  MISSING from mirror")
                print(f"{spec.name}  {spec.dataset_id}@{spec.revision}{held}")
            return EXIT_PASS
        for path in mirror.download(args.dir, targets):
            print(f"downloaded {path}")
        print(f"{len(targets)} dataset repositories in {args.dir}; on the offline runner: "
              f"pytest -m quality --embedgate-benchmark-mirror {args.dir}")
        return EXIT_PASS
    except (ProfileError, AnchorError, BenchmarkError, ValueError, OSError) as exc:
        print(f"embedgate {args.command}: {exc}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
