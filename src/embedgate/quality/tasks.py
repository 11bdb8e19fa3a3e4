"""Quality tasks as data: what to load, how to score it, which instruction to use.

The kit's own fixtures are declared in BUILTIN_TASKS; a user adds a dataset with a
``[[tool.embedgate.datasets]]`` table or ``--embedgate-dataset "name=... task=... path=..."`` and gets the
same treatment (metric, CI, threshold, report) without touching code.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from embedgate.quality.datasets import (PAIR_FORMATS, RETRIEVAL_FORMATS, DatasetError, PairDataset,
                                RetrievalDataset, load_pairs, load_parallel_crosslingual,
                                load_pooled_languages, load_retrieval)
from embedgate.quality.metrics import MAIN_METRIC
from embedgate.resources import datasets_dir

KINDS = tuple(MAIN_METRIC)
XNLI_LANGUAGES = ("en", "zh", "es", "ar", "ru", "vi", "th", "sw", "fr", "de", "hi", "tr", "ur",
                  "bg", "el")

# Task descriptions for instruction-aware models (the {task} of a profile's query template).
STS_INSTRUCTION = "Retrieve semantically similar text."
NLI_INSTRUCTION = "Retrieve text that is semantically similar to the given text."
CODE_INSTRUCTION = "Given a question about programming, retrieve the code that answers it."
QA_INSTRUCTION = "Given a question, retrieve passages that answer the question."


class TaskError(ValueError):
    """A dataset entry that cannot become a task; says which entry and why."""


@dataclass(frozen=True)
class TaskSpec:
    """One scored dataset. `threshold` overrides the profile's [thresholds] entry of `name`."""

    name: str
    kind: str
    path: Path
    format: str = "auto"
    columns: Mapping[str, str] = field(default_factory=dict)
    label_map: Mapping[str, float | None] | None = None
    filter: Mapping[str, str] | None = None
    split: str | None = None
    instruction: str = STS_INSTRUCTION
    threshold: float | None = None
    description: str = ""
    builtin: bool = True

    @property
    def main_metric(self) -> str:
        return MAIN_METRIC[self.kind]

    def load(self) -> PairDataset | RetrievalDataset:
        if self.kind == "retrieval":
            return load_retrieval(self.path, name=self.name, format=self.format,
                                  columns=self.columns, split=self.split)
        if self.format == "pooled":
            return load_pooled_languages(self.path, name=self.name, columns=self.columns,
                                         label_map=self.label_map)
        if self.format == "parallel":
            return load_parallel_crosslingual(self.path, name=self.name, columns=self.columns,
                                              label_map=self.label_map)
        return load_pairs(self.path, name=self.name, format=self.format, columns=self.columns,
                          label_map=self.label_map, filter=self.filter, split=self.split)


def builtin_tasks() -> list[TaskSpec]:
    root = datasets_dir()
    tasks = [
        TaskSpec("sts_en", "sts", root / "sts_en.tsv",
                 description="English graded similarity 0-5 (negation, antonymy, word order, "
                             "numbers, homonyms, idioms)"),
        TaskSpec("atec_zh", "sts", root / "atec_zh.tsv", columns={"score": "label"},
                 description="Chinese customer-service pairs 0/1, half hard negatives; scored "
                             "like C-MTEB ATEC (Spearman of cosine vs label)"),
    ]
    tasks += [TaskSpec("xnli_multilingual", "pair_classification", root / "xnli", format="pooled",
                       instruction=NLI_INSTRUCTION,
                       description=f"NLI pairs in {len(XNLI_LANGUAGES)} languages, each premise "
                                   f"with its hypothesis in the same language: entailment vs "
                                   f"contradiction (AP per language in by_group)")]
    tasks += [
        TaskSpec("xnli_crosslingual", "pair_classification", root / "xnli", format="parallel",
                 instruction=NLI_INSTRUCTION,
                 description="English premise vs the hypothesis in each other language"),
        TaskSpec("code_search", "retrieval", root / "code_search", format="beir",
                 instruction=CODE_INSTRUCTION,
                 description="English and Chinese questions vs code in several languages"),
        TaskSpec("crosslingual_retrieval", "retrieval", root / "crosslingual", format="beir",
                 instruction=QA_INSTRUCTION,
                 description="Queries in 8 languages vs English documents"),
    ]
    return tasks


ENTRY_KEYS = {"name", "task", "path", "format", "columns", "label_map", "filter", "split",
              "instruction", "threshold", "description"}


def _mapping(value: Any, key: str) -> dict[str, Any]:
    """columns/filter as a table, or on the command line as `a,b,c` (for the pair roles, in
    order) or `role:column,role:column`."""
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    parts = [p for p in str(value).split(",") if p]
    if all(":" in p for p in parts):
        return dict(p.split(":", 1) for p in parts)
    if key == "columns" and len(parts) in (2, 3):
        return dict(zip(("sentence1", "sentence2", "score"), parts))
    raise TaskError(f"{key}={value!r}: write role:column pairs separated by commas")


def parse_entry(entry: str | Mapping[str, Any], base: Path) -> TaskSpec:
    """A user dataset entry (a config table or a command-line string) as a TaskSpec."""
    where = f"dataset entry {entry!r}"
    if isinstance(entry, str):
        try:
            fields = dict(item.split("=", 1) for item in shlex.split(entry))
        except ValueError:
            raise TaskError(f"{where}: write space-separated key=value items, e.g. "
                            f"\"name=atec task=sts path=data/atec.tsv "
                            f"columns=sentence1,sentence2,label\"") from None
    else:
        fields = dict(entry)
    unknown = sorted(set(fields) - ENTRY_KEYS)
    if unknown:
        raise TaskError(f"{where}: unknown key(s) {unknown}; known: {sorted(ENTRY_KEYS)}")
    for key in ("name", "task", "path"):
        if not fields.get(key):
            raise TaskError(f"{where}: needs {key}=")
    kind = {"pairs": "pair_classification", "pair": "pair_classification",
            "classification": "pair_classification"}.get(fields["task"], fields["task"])
    if kind not in KINDS:
        raise TaskError(f"{where}: task={fields['task']!r}; use one of {', '.join(KINDS)}")
    fmt = fields.get("format", "auto")
    allowed = RETRIEVAL_FORMATS if kind == "retrieval" else PAIR_FORMATS
    if fmt != "auto" and fmt not in allowed:
        raise TaskError(f"{where}: format={fmt!r} does not fit task {kind}; use one of "
                        f"{', '.join(allowed)}")
    path = Path(str(fields["path"])).expanduser()
    threshold = fields.get("threshold")
    try:
        threshold = None if threshold in (None, "") else float(threshold)
    except ValueError:
        raise TaskError(f"{where}: threshold={threshold!r} is not a number") from None
    label_map = fields.get("label_map")
    if label_map is not None:
        label_map = {k: (None if v in (None, "drop", "") else float(v))
                     for k, v in _mapping(label_map, "label_map").items()}
    default_instruction = {"retrieval": QA_INSTRUCTION,
                           "pair_classification": NLI_INSTRUCTION}.get(kind, STS_INSTRUCTION)
    return TaskSpec(
        name=str(fields["name"]), kind=kind,
        path=path if path.is_absolute() else (base / path),
        format=fmt, columns=_mapping(fields.get("columns", {}), "columns"),
        label_map=label_map,
        filter=_mapping(fields["filter"], "filter") if fields.get("filter") else None,
        split=fields.get("split"), instruction=str(fields.get("instruction",
                                                              default_instruction)),
        threshold=threshold, description=str(fields.get("description", f"user dataset {path}")),
        builtin=False)


def all_tasks(entries: tuple[Any, ...], base: Path) -> list[TaskSpec]:
    """Built-in tasks, then the user's; a user entry may replace a built-in of the same name."""
    user = [parse_entry(e, base) for e in entries]
    names = [t.name for t in user]
    if len(set(names)) != len(names):
        raise TaskError(f"dataset names must be unique, got {names}")
    return [t for t in builtin_tasks() if t.name not in names] + user


__all__ = ["TaskSpec", "TaskError", "DatasetError", "builtin_tasks", "all_tasks", "parse_entry"]
