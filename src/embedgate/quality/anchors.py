"""MTEB's published scores as anchors: a profile's ``[published]`` table, the bar it implies and
the "reproduces published" check.

A profile copies its model's published main scores, as facts with their source (the public
embeddings-benchmark/results repository at a commit, the result file, the mteb version that
wrote it), keyed ``TASK/split/subset`` like the benchmark tests. Its ``tolerance`` says how far a
correct serving setup may land from MTEB's figure (dtype, batch composition, implementation).
Two checks follow from one anchor: the bar (served score >= published - tolerance) and
reproduction (|served - published| <= tolerance): a score well above MTEB's points at a
different setup (data, instruction, pooling) as surely as one below.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

TABLE_KEYS = ("repository", "commit", "model", "tolerance", "scores")
SCORE_KEYS = ("score", "file", "mteb_version")


class AnchorError(ValueError):
    """A ``[published]`` table that cannot be read; names the profile file and the entry."""


@dataclass(frozen=True)
class Anchor:
    """One published main score and where it comes from."""

    key: str                 # TASK/split/subset
    score: float
    tolerance: float
    repository: str
    commit: str
    file: str
    mteb_version: str
    model: str
    model_revision: str
    profile: str

    @property
    def bar(self) -> float:
        return round(self.score - self.tolerance, 6)

    def source(self) -> str:
        return (f"MTEB published {self.score:g} for {self.model} ({self.repository}@"
                f"{self.commit[:12]} {self.file}, mteb {self.mteb_version})")

    def bar_source(self) -> str:
        return (f"published {self.score:g} - tolerance {self.tolerance:g}; {self.source()}; "
                f"profile {self.profile!r} [published]")

    def check(self, served: float) -> dict[str, Any]:
        """The reproduction verdict for a served score, as quality.json keeps it."""
        difference = served - self.score
        return {"score": self.score, "tolerance": self.tolerance, "bar": self.bar,
                "difference": difference,
                "reproduced": bool(math.isfinite(difference)
                                   and abs(difference) <= self.tolerance),
                "source": self.source(), "file": self.file, "commit": self.commit,
                "mteb_version": self.mteb_version, "model_revision": self.model_revision}


def profile_anchors(profile: Any) -> dict[str, Anchor]:
    """The profile's published scores by TASK/split/subset ({} without a [published] table)."""
    table: Mapping[str, Any] = profile.published or {}
    if not table:
        return {}
    where = f"{profile.path}: [published]"
    missing = [k for k in TABLE_KEYS if k not in table]
    if missing:
        raise AnchorError(f"{where} lacks {missing}; it needs {', '.join(TABLE_KEYS)}")
    tolerance = table["tolerance"]
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) \
            or not 0 <= tolerance < 1:
        raise AnchorError(f"{where} tolerance {tolerance!r} must be a number in [0, 1)")
    anchors = {}
    for key, entry in table["scores"].items():
        if key.count("/") != 2 or not isinstance(entry, Mapping) \
                or any(k not in entry for k in SCORE_KEYS):
            raise AnchorError(f"{where}.scores {key!r}: write \"TASK/split/subset\" = "
                              f"{{score = ..., file = ..., mteb_version = ...}}")
        score = entry["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) \
                or not math.isfinite(score):
            raise AnchorError(f"{where}.scores {key!r}: score {score!r} is not a number")
        anchors[key] = Anchor(
            key=key, score=float(score), tolerance=float(entry.get("tolerance", tolerance)),
            repository=str(table["repository"]), commit=str(table["commit"]),
            file=(f"{table['results_dir']}/{entry['file']}" if table.get("results_dir")
                  else str(entry["file"])), mteb_version=str(entry["mteb_version"]),
            model=str(table["model"]),
            model_revision=str(entry.get("model_revision", table.get("model_revision", ""))),
            profile=profile.name)
    return anchors


def reproduction_message(name: str, metric: str, served: float, ci: Any, n: int,
                         anchor: Anchor, data_note: str = "") -> str:
    """Why a served score does not reproduce the published one: sent, got, expected."""
    difference = served - anchor.score
    side = ("above MTEB's: check the data, the instruction and the pooling; a serving setup "
            "that differs from MTEB's can score higher" if difference > 0 else
            "below MTEB's: the served model, its dtype or the serving stack lose quality")
    low, high = getattr(ci, "low", float("nan")), getattr(ci, "high", float("nan"))
    return (f"{name} does not reproduce MTEB's published score\n"
            f"  got:      {metric} {served:.5f} (95% CI {low:.4f}-{high:.4f}, n={n})\n"
            f"  expected: {anchor.score:g} +- {anchor.tolerance:g} ({anchor.source()}; "
            f"tolerance from profile {anchor.profile!r} [published])\n"
            f"  difference: {difference:+.5f}, {side}"
            + (f"\n  note: {data_note}" if data_note else ""))


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def published_table(results: Mapping[str, Any], model: str, *, tolerance: float,
                    tolerance_note: str = "") -> str:
    """The ``[published]`` TOML table of `model` from a mteb-results.json (models -> task ->
    split -> subset -> {main_score, file, mteb_version, model_revision}); NaN figures are left
    out with a comment."""
    if model not in results.get("models", {}):
        raise AnchorError(f"no published scores for {model!r}; the file has "
                          f"{sorted(results.get('models', {}))}")
    source = results.get("source", {})
    entries = results["models"][model]
    revisions = {sub.get("model_revision") for splits in entries.values()
                 for subsets in splits.values() for sub in subsets.values()}
    lines = ["[published]",
             "# MTEB's published main scores for this model, copied as facts from the public "
             "results repository",
             "# below (via `embedgate benchmarks anchors`); keys are the benchmark tests' "
             "TASK/split/subset.",
             f"repository = {_toml_str(source.get('repository', ''))}",
             f"commit = {_toml_str(source.get('commit', ''))}",
             f"model = {_toml_str(model)}"]
    if len(revisions) == 1:
        lines.append(f"model_revision = {_toml_str(revisions.pop() or '')}")
    folders = {str(Path(sub["file"]).parent) for splits in entries.values()
               for subsets in splits.values() for sub in subsets.values()}
    folder = folders.pop() if len(folders) == 1 else None
    if folder:
        lines.append(f"results_dir = {_toml_str(folder)}   # each score's file is in here")
    lines.append(f"tolerance = {tolerance:g}" + (f"   # {tolerance_note}" if tolerance_note
                                                  else ""))
    lines += ["", "[published.scores]"]
    one_revision = any(line.startswith("model_revision") for line in lines)
    for task in sorted(entries):
        for split in sorted(entries[task]):
            for subset in sorted(entries[task][split]):
                entry = entries[task][split][subset]
                key = f"{task}/{split}/{subset}"
                score = entry.get("main_score")
                if not isinstance(score, (int, float)) or not math.isfinite(score):
                    lines.append(f"# {key}: published value {score!r} is not a number; no anchor")
                    continue
                file = Path(entry["file"]).name if folder else entry["file"]
                fields = [f"score = {score!r}",
                          f"mteb_version = {_toml_str(entry['mteb_version'])}",
                          f"file = {_toml_str(file)}"]
                if not one_revision:
                    fields.append(f"model_revision = {_toml_str(entry.get('model_revision', ''))}")
                lines.append(f"{_toml_str(key)} = {{ {', '.join(fields)} }}")
    return "\n".join(lines) + "\n"


def read_results(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AnchorError(f"{path}: cannot read published scores ({exc})") from None


__all__ = ["Anchor", "AnchorError", "profile_anchors", "published_table", "read_results",
           "reproduction_message"]
