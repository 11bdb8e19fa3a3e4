"""Compare a candidate run with a baseline run: may the candidate replace the baseline?

Quality is judged per dataset on the paired bootstrap CI of delta = candidate - baseline,
resampled item by item on the per-item values both quality.json files keep:

- ``pass``: the CI's lower bound is above -margin (non-inferior). The run passes only when every
  dataset does: an intersection-union test, which needs no multiplicity adjustment.
- ``worse``: evidence of a regression beyond the margin: the one-sided p-value of "delta <
  -margin" (the CI inverted at -margin) is below alpha/2 after Holm's step-down over all compared
  datasets, so the chance of calling any dataset worse by noise alone stays below alpha/2.
- ``not shown``: neither; the CI is too wide to tell at this n. What it does to the verdict is
  the user's policy (`NOT_SHOWN_POLICIES`), stated in the report.

Each dataset also states its power: the smallest regression beyond the margin it would call
worse 80% of the time, from the bootstrap SE. The CI method (percentile) is the one the coverage
simulation (scripts/ci_coverage.py, README) found closest to nominal at the kit's sizes; BCa
under-covered there. A dataset the
candidate lacks or that errored in either run fails. Performance uses the perf gate's rules.
Inputs that cannot be compared (missing files, other schema, other dataset content) are an input
error, never a pass.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from embedgate.perf import rules as gate
from embedgate.quality.metrics import PAIR_EXTRA_COLUMNS, PAIR_MAIN_SCORE_BATCH
from embedgate.quality.results_json import SCHEMA

DEFAULT_MARGIN = 0.01
ALPHA = 0.05            # two-sided CI level 95%; each one-sided test at ALPHA / 2
POWER = 0.80            # the power at which the minimum detectable regression is stated
CI_METHOD = "percentile"  # closest to nominal coverage in scripts/ci_coverage.py (README table)
NOT_SHOWN_POLICIES = ("fail", "pass")
DEFAULT_NOT_SHOWN = "fail"
# Verdicts that fail the comparison (not_shown only under --not-shown fail).
FAILING = ("worse", "missing", "errored")
QUALITY_FILE = "quality.json"
PERF_FILES = ("perf.json", "benchmark.json")


class CompareInputError(ValueError):
    """Reports that cannot be compared; the command exits 2 and says why."""


@dataclass(frozen=True)
class RunReports:
    """One reports directory: quality.json and/or a pytest-benchmark JSON."""

    path: Path
    quality: dict[str, Any] | None
    perf: dict[str, Any] | None
    perf_path: Path | None

    @property
    def label(self) -> str:
        doc = self.quality or {}
        name = doc.get("profile") or (self.perf or {}).get("embedgate", {}).get("profile")
        return str(name or self.path.name)

    @property
    def perf_figures(self) -> dict[str, dict[str, Any]]:
        return gate.figures_from_benchmark_json(self.perf) if self.perf else {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompareInputError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise CompareInputError(f"{path}: top level is {type(doc).__name__}, expected an object")
    return doc


def load_run(path: str | Path) -> RunReports:
    """A reports dir: quality.json (the quality suite) and perf.json (pytest -m perf
    --benchmark-json=DIR/perf.json); at least one must be there."""
    path = Path(path)
    if not path.is_dir():
        raise CompareInputError(f"{path}: not a directory; expected a reports dir holding "
                                f"{QUALITY_FILE} and/or perf.json")
    quality = None
    if (path / QUALITY_FILE).is_file():
        quality = _read_json(path / QUALITY_FILE)
        if quality.get("schema") != SCHEMA:
            raise CompareInputError(f"{path / QUALITY_FILE}: schema {quality.get('schema')!r}, "
                                    f"this embedgate reads {SCHEMA!r}")
    perf_path = next((path / n for n in PERF_FILES if (path / n).is_file()), None)
    perf = None
    if perf_path is not None:
        perf = _read_json(perf_path)
        if not isinstance(perf.get("benchmarks"), list):
            raise CompareInputError(f"{perf_path}: no 'benchmarks' list; not a pytest-benchmark "
                                    f"JSON file")
    if quality is None and perf is None:
        raise CompareInputError(f"{path}: holds neither {QUALITY_FILE} nor "
                                f"{' / '.join(PERF_FILES)}")
    return RunReports(path, quality, perf, perf_path)


@dataclass(frozen=True)
class DeltaCI:
    low: float
    high: float
    method: str
    n_resamples: int
    seed: int
    confidence: float = 1 - ALPHA


@dataclass
class DatasetComparison:
    name: str
    status: str  # pass | not_shown | worse | missing | errored | only_candidate | not_applicable
    kind: str = ""
    metric: str = ""
    baseline: float | None = None
    candidate: float | None = None
    baseline_ci: tuple[float, float] | None = None
    candidate_ci: tuple[float, float] | None = None
    delta: float | None = None
    delta_ci: DeltaCI | None = None
    margin: float = DEFAULT_MARGIN
    n: int = 0
    se: float | None = None
    mde: float | None = None          # smallest regression beyond -margin detected at POWER
    p_worse: float | None = None      # one-sided p of "delta < -margin"
    p_worse_holm: float | None = None
    detail: str = ""

    @property
    def compared(self) -> bool:
        return self.delta_ci is not None

    def reason(self) -> str:
        if not self.compared:
            return f"{self.name}: {self.detail}"
        ci = self.delta_ci
        say = {"pass": f"lower bound above -{self.margin:g}: non-inferior",
               "worse": f"worse: regression beyond -{self.margin:g} (Holm-adjusted one-sided "
                        f"p {self.p_worse_holm:.4f} < {ALPHA / 2:g})",
               "not_shown": f"not shown: the CI straddles -{self.margin:g} (Holm-adjusted p "
                            f"{self.p_worse_holm:.4f}); at n={self.n} only a regression beyond "
                            f"about {self.mde:.3f} would be detected 80% of the time"}[self.status]
        return (f"{self.name}: {self.metric} {self.baseline:.4f} -> {self.candidate:.4f} "
                f"(delta {self.delta:+.4f}, paired 95% CI {ci.low:+.4f} to {ci.high:+.4f}, "
                f"{ci.method}, n={self.n}); {say}")


def _delta_statistic(kind: str):
    if kind == "retrieval":
        return lambda cand, base, axis=-1: np.mean(cand - base, axis=axis)
    score = PAIR_MAIN_SCORE_BATCH[kind]

    def delta(cand, base, gold, *extra, axis=-1):
        """Main score of the candidate minus the baseline's; `extra` holds the other score
        columns MTEB's main score ranks by (pair classification's max_ap), candidate's first."""
        half = len(extra) // 2
        return score(cand, gold, *extra[:half]) - score(base, gold, *extra[half:])
    return delta


def _floats(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=float)


def _p_below(dist: np.ndarray, theta: float) -> float:
    """One-sided p-value of "delta < theta" from the percentile bootstrap: the share of
    resampled deltas at or above theta (the smallest alpha whose upper bound is below theta)."""
    return float((1 + np.sum(dist >= theta)) / (dist.size + 1))


def compare_dataset(name: str, base: Mapping[str, Any], cand: Mapping[str, Any], *,
                    margin: float, n_resamples: int, seed: int) -> DatasetComparison:
    """One dataset's delta with its paired CI, SE, power and one-sided p (Holm comes later)."""
    for key in ("task", "main_metric"):
        if base.get(key) != cand.get(key):
            raise CompareInputError(f"dataset {name}: {key} differs ({base.get(key)!r} vs "
                                    f"{cand.get(key)!r}); the runs did not do the same work")
    kind, metric = base["task"], base["main_metric"]
    row = DatasetComparison(name, "errored", kind, metric, base.get("score"), cand.get("score"),
                            _ci_pair(base), _ci_pair(cand), margin=margin)
    for side, entry in (("baseline", base), ("candidate", cand)):
        if entry.get("status") == "error" or entry.get("score") is None:
            row.detail = (f"errored in the {side} run ({entry.get('error') or 'no score'}); "
                          f"not compared, which fails the comparison")
            return row
    b_hash, c_hash = base["dataset"]["sha256"], cand["dataset"]["sha256"]
    if b_hash != c_hash:
        raise CompareInputError(f"dataset {name}: different content (sha256 {b_hash[:12]} in the "
                                f"baseline, {c_hash[:12]} in the candidate); scores on different "
                                f"data cannot be compared; rerun both on the same files")
    b_items, c_items = base.get("items") or {}, cand.get("items") or {}
    if b_items.get("ids") != c_items.get("ids") or not b_items.get("ids"):
        raise CompareInputError(f"dataset {name}: the per-item ids differ between the runs (or "
                                f"are missing); cannot pair items")
    if kind == "retrieval":
        columns = (_floats(c_items[metric]), _floats(b_items[metric]))
    else:
        gold = _floats(b_items["gold"])
        # The other score columns MTEB's main score ranks by, where both runs kept them.
        names = [c for c in PAIR_EXTRA_COLUMNS[kind] if c in c_items and c in b_items]
        columns = (_floats(c_items["similarity"]), _floats(b_items["similarity"]),
                   gold.astype(int) if kind == "pair_classification" else gold,
                   *[_floats(items[c]) for items in (c_items, b_items) for c in names])
    stat = _delta_statistic(kind)
    delta = float(stat(*columns))
    row.delta, row.n = delta, int(columns[0].size)
    if row.n < 3 or not math.isfinite(delta):
        row.detail = f"no finite delta (n={row.n}); not compared, which fails the comparison"
        return row
    res = stats.bootstrap(columns, stat, paired=True, vectorized=True, axis=-1,
                          n_resamples=n_resamples, confidence_level=1 - ALPHA, method=CI_METHOD,
                          random_state=np.random.default_rng(seed))
    dist = res.bootstrap_distribution
    row.se = float(res.standard_error)
    row.mde = margin + (stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(POWER)) * row.se
    low, high = (delta, delta) if np.ptp(dist) == 0 else res.confidence_interval
    row.delta_ci = DeltaCI(float(low), float(high), CI_METHOD, n_resamples, seed)
    row.p_worse = _p_below(dist, -margin)
    row.status = "pass" if row.delta_ci.low > -margin else "not_shown"
    return row


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control, any dependence)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _ci_pair(entry: Mapping[str, Any]) -> tuple[float, float] | None:
    ci = entry.get("ci") or {}
    return (ci["low"], ci["high"]) if ci.get("low") is not None else None


def compare_quality(base: Mapping[str, Any], cand: Mapping[str, Any], *,
                    margin: float = DEFAULT_MARGIN, margins: Mapping[str, float] | None = None,
                    n_resamples: int = 1000, seed: int = 0) -> list[DatasetComparison]:
    b_sets, c_sets = base.get("datasets", {}), cand.get("datasets", {})
    out = []
    for name in list(dict.fromkeys([*b_sets, *c_sets])):
        b, c = b_sets.get(name), c_sets.get(name)
        entry = b or c
        row = DatasetComparison(name, "", entry["task"], entry["main_metric"],
                                (b or {}).get("score"), (c or {}).get("score"),
                                margin=(margins or {}).get(name, margin))
        if b is not None and b.get("status") == "not_applicable":
            why = str(b.get("reason") or "").removeprefix("not applicable: ")
            row.status, row.detail = "not_applicable", f"baseline's profile: {why}; not compared"
        elif c is None:
            row.status, row.detail = "missing", ("the candidate run lacks it; not compared, "
                                                 "which fails the comparison")
        elif b is None:
            row.status, row.detail = "only_candidate", "only the candidate run has it; new"
        else:
            row = compare_dataset(name, b, c, margin=row.margin, n_resamples=n_resamples,
                                  seed=seed)
        out.append(row)
    tested = [d for d in out if d.compared]
    for d, p in zip(tested, holm([d.p_worse for d in tested])):
        d.p_worse_holm = p
        if p < ALPHA / 2:
            d.status = "worse"
    return out


@dataclass
class Comparison:
    baseline: RunReports
    candidate: RunReports
    datasets: list[DatasetComparison]
    perf: gate.GateReport | None
    notes: list[str] = field(default_factory=list)
    not_shown: str = DEFAULT_NOT_SHOWN

    @property
    def failing_statuses(self) -> tuple[str, ...]:
        return FAILING + (("not_shown",) if self.not_shown == "fail" else ())

    @property
    def quality_failures(self) -> list[DatasetComparison]:
        return [d for d in self.datasets if d.status in self.failing_statuses]

    @property
    def passed(self) -> bool:
        return not self.quality_failures and (self.perf is None or self.perf.ok)

    def policy(self) -> str:
        """The error control and the not-shown policy, as the report states them."""
        return (f"Per dataset: pass when the paired {1 - ALPHA:.0%} CI ({CI_METHOD} bootstrap) "
                f"of candidate - baseline has its lower bound above -margin; worse when the "
                f"one-sided p of delta < -margin is below {ALPHA / 2:g} after Holm's step-down "
                f"over the {sum(d.compared for d in self.datasets)} compared datasets "
                f"(family-wise error of a false 'worse' at most {ALPHA / 2:g}); not shown "
                f"otherwise. MDE: the smallest regression called worse {POWER:.0%} of the "
                f"time, margin + (z {1 - ALPHA / 2:.3f} + z {POWER:.2f}) x SE. Policy: "
                f"'not shown' {'fails' if self.not_shown == 'fail' else 'passes'} the "
                f"comparison (--not-shown {self.not_shown}).")

    def failing_rules(self) -> list[str]:
        lines = [d.reason() for d in self.quality_failures]
        if self.perf is not None:
            lines += [f.message() for f in self.perf.failures]
        return lines


def compare(baseline: str | Path, candidate: str | Path, *, margin: float = DEFAULT_MARGIN,
            margins: Mapping[str, float] | None = None,
            perf_rules: Sequence[str] = gate.DEFAULT_RULES, n_resamples: int = 1000,
            seed: int = 0, not_shown: str = DEFAULT_NOT_SHOWN,
            perf_allow_unjudged: bool = False) -> Comparison:
    if not_shown not in NOT_SHOWN_POLICIES:
        raise CompareInputError(f"--not-shown {not_shown!r}: use one of "
                                f"{', '.join(NOT_SHOWN_POLICIES)}")
    base, cand = load_run(baseline), load_run(candidate)
    notes: list[str] = []
    datasets: list[DatasetComparison] = []
    if base.quality and cand.quality:
        datasets = compare_quality(base.quality, cand.quality, margin=margin, margins=margins,
                                   n_resamples=n_resamples, seed=seed)
    elif base.quality or cand.quality:
        notes.append(f"quality: only the {'baseline' if base.quality else 'candidate'} run has "
                     f"{QUALITY_FILE}; quality not compared")
    perf = None
    if base.perf and cand.perf:
        try:
            rules = gate.parse_rules(perf_rules)
        except gate.RuleError as exc:
            raise CompareInputError(str(exc)) from None
        perf = gate.evaluate(base.perf_figures, cand.perf_figures, rules,
                             allow_unjudged=perf_allow_unjudged)
        perf.warnings.extend(gate.machine_differences(base.perf.get("machine_info"),
                                                      cand.perf.get("machine_info")))
    elif base.perf or cand.perf:
        notes.append(f"perf: only the {'baseline' if base.perf else 'candidate'} run has a perf "
                     f"JSON; performance not compared")
    return Comparison(base, cand, datasets, perf, notes, not_shown)


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
