"""Compare a candidate run with a baseline run: may the candidate replace the baseline?

Quality is judged per dataset by non-inferiority: the paired bootstrap CI of (candidate -
baseline), resampled item by item on the per-item values both quality.json files keep, must
have its lower bound above -margin. Performance uses the perf gate's rules (gate.py). Inputs
that cannot be compared (missing files, other schema, other dataset content) are an input error,
never a pass.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from embedgate import gate
from embedgate.metrics import PAIR_MAIN_SCORE, Interval, bootstrap_ci, mean_ci
from embedgate.report.quality_json import SCHEMA

DEFAULT_MARGIN = 0.01
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


@dataclass
class DatasetComparison:
    name: str
    status: str  # pass | fail | only_baseline | only_candidate
    kind: str = ""
    metric: str = ""
    baseline: float | None = None
    candidate: float | None = None
    baseline_ci: tuple[float, float] | None = None
    candidate_ci: tuple[float, float] | None = None
    delta: float | None = None
    delta_ci: Interval | None = None
    margin: float = DEFAULT_MARGIN
    n: int = 0

    def reason(self) -> str:
        if self.status.startswith("only_"):
            side = self.status.split("_", 1)[1]
            return f"{self.name}: only the {side} run has it; not compared"
        lo = self.delta_ci.low if self.delta_ci else float("nan")
        hi = self.delta_ci.high if self.delta_ci else float("nan")
        verdict = "above" if self.status == "pass" else "not above"
        return (f"{self.name}: {self.metric} {self.baseline:.4f} -> {self.candidate:.4f} "
                f"(delta {self.delta:+.4f}, paired 95% CI {lo:+.4f} to {hi:+.4f}, n={self.n}); "
                f"lower bound {verdict} -{self.margin:g}")


def _delta_statistic(kind: str):
    if kind == "retrieval":
        return None
    score = PAIR_MAIN_SCORE[kind]
    return lambda cand, base, gold: score(cand, gold) - score(base, gold)


def compare_dataset(name: str, base: Mapping[str, Any], cand: Mapping[str, Any], *,
                    margin: float, n_resamples: int, seed: int) -> DatasetComparison:
    for key in ("task", "main_metric"):
        if base.get(key) != cand.get(key):
            raise CompareInputError(f"dataset {name}: {key} differs ({base.get(key)!r} vs "
                                    f"{cand.get(key)!r}); the runs did not do the same work")
    b_hash, c_hash = base["dataset"]["sha256"], cand["dataset"]["sha256"]
    if b_hash != c_hash:
        raise CompareInputError(f"dataset {name}: different content (sha256 {b_hash[:12]} in the "
                                f"baseline, {c_hash[:12]} in the candidate); scores on different "
                                f"data cannot be compared; rerun both on the same files")
    b_items, c_items = base.get("items") or {}, cand.get("items") or {}
    if b_items.get("ids") != c_items.get("ids") or not b_items.get("ids"):
        raise CompareInputError(f"dataset {name}: the per-item ids differ between the runs (or "
                                f"are missing); cannot pair items")
    kind, metric = base["task"], base["main_metric"]
    if kind == "retrieval":
        diff = (np.asarray(c_items[metric], dtype=float) - np.asarray(b_items[metric], dtype=float))
        delta = float(np.mean(diff))
        ci = mean_ci(diff, n_resamples=n_resamples, seed=seed)
    else:
        cand_sim = np.asarray([np.nan if v is None else v for v in c_items["similarity"]], float)
        base_sim = np.asarray([np.nan if v is None else v for v in b_items["similarity"]], float)
        gold = np.asarray(b_items["gold"], dtype=float)
        if kind == "pair_classification":
            gold = gold.astype(int)
        stat = _delta_statistic(kind)
        delta = stat(cand_sim, base_sim, gold)
        ci = bootstrap_ci(stat, cand_sim, base_sim, gold, n_resamples=n_resamples, seed=seed)
    ok = math.isfinite(ci.low) and ci.low > -margin
    return DatasetComparison(
        name, "pass" if ok else "fail", kind, metric, base.get("score"), cand.get("score"),
        _ci_pair(base), _ci_pair(cand), delta, ci, margin, len(b_items["ids"]))


def _ci_pair(entry: Mapping[str, Any]) -> tuple[float, float] | None:
    ci = entry.get("ci") or {}
    return (ci["low"], ci["high"]) if ci.get("low") is not None else None


def compare_quality(base: Mapping[str, Any], cand: Mapping[str, Any], *,
                    margin: float = DEFAULT_MARGIN, margins: Mapping[str, float] | None = None,
                    n_resamples: int = 1000, seed: int = 0) -> list[DatasetComparison]:
    b_sets, c_sets = base.get("datasets", {}), cand.get("datasets", {})
    out = []
    for name in list(dict.fromkeys([*b_sets, *c_sets])):
        if name not in c_sets:
            out.append(DatasetComparison(name, "only_baseline", b_sets[name]["task"],
                                         b_sets[name]["main_metric"], b_sets[name]["score"]))
        elif name not in b_sets:
            out.append(DatasetComparison(name, "only_candidate", c_sets[name]["task"],
                                         c_sets[name]["main_metric"],
                                         candidate=c_sets[name]["score"]))
        else:
            out.append(compare_dataset(name, b_sets[name], c_sets[name],
                                       margin=(margins or {}).get(name, margin),
                                       n_resamples=n_resamples, seed=seed))
    return out


@dataclass
class Comparison:
    baseline: RunReports
    candidate: RunReports
    datasets: list[DatasetComparison]
    perf: gate.GateReport | None
    notes: list[str] = field(default_factory=list)

    @property
    def quality_failures(self) -> list[DatasetComparison]:
        return [d for d in self.datasets if d.status == "fail"]

    @property
    def passed(self) -> bool:
        return not self.quality_failures and (self.perf is None or self.perf.ok)

    def failing_rules(self) -> list[str]:
        lines = [d.reason() for d in self.quality_failures]
        if self.perf is not None:
            lines += [f.message() for f in self.perf.failures]
        return lines


def compare(baseline: str | Path, candidate: str | Path, *, margin: float = DEFAULT_MARGIN,
            margins: Mapping[str, float] | None = None,
            perf_rules: Sequence[str] = gate.DEFAULT_RULES, n_resamples: int = 1000,
            seed: int = 0) -> Comparison:
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
        perf = gate.evaluate(base.perf_figures, cand.perf_figures, rules)
        perf.warnings.extend(gate.machine_differences(base.perf.get("machine_info"),
                                                      cand.perf.get("machine_info")))
    elif base.perf or cand.perf:
        notes.append(f"perf: only the {'baseline' if base.perf else 'candidate'} run has a perf "
                     f"JSON; performance not compared")
    return Comparison(base, cand, datasets, perf, notes)
