"""MTEB benchmarks as quality tasks, defined by the `mteb` package itself.

mteb is the source of truth for each benchmark: the Hugging Face dataset id and its pinned
revision, the eval splits and subsets (languages), the transform from raw rows to what MTEB
scores (XNLI's stratified subsample and neutral drop, ...) and the main score. This module picks
benchmarks by name (``NAME[:split[,split][:subset,...]]``), loads their data with mteb's own
loader from wherever `embedgate.quality.mirror` finds it, and gives the kit's scorer the pairs,
or the corpus, queries and qrels, that mteb's evaluators would see. Each (task, split, subset) is
one quality test named ``TASK/split/subset``. mteb is imported only when a benchmark is asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from embedgate.quality.datasets import DatasetError, PairDataset, RetrievalDataset
from embedgate.quality.metrics import RECALL_AT
from embedgate.quality.mirror import DataLocator, Located

PROFILE_KEYWORD = "profile"   # every benchmark the profile has a published score for
NONE_KEYWORD = "none"
KINDS = {"STS": "sts", "PairClassification": "pair_classification", "Retrieval": "retrieval"}
RETRIEVAL_METRICS = ("ndcg_at_10", "mrr_at_10", "map_at_100") + tuple(f"recall_at_{k}"
                                                                      for k in RECALL_AT)
# MTEB's main score -> the kit's name for the same number (what the kit can compute).
MAIN_SCORES = {"sts": {"cosine_spearman": "spearman"},
               "pair_classification": {"max_ap": "max_ap"},
               "retrieval": {m: m for m in RETRIEVAL_METRICS}}


class BenchmarkError(ValueError):
    """A benchmark selection that cannot be run: unknown name, split, subset or task type."""


@dataclass(frozen=True)
class Selection:
    """``NAME[:splits[:subsets]]``; None means all of mteb's eval splits / subsets."""

    name: str
    splits: tuple[str, ...] | None = None
    subsets: tuple[str, ...] | None = None
    published: bool = False  # from the profile's published scores: unrunnable ones are noted


def parse_selection(text: str) -> Selection:
    parts = str(text).strip().split(":")
    if not parts[0] or len(parts) > 3:
        raise BenchmarkError(f"benchmark {text!r}: write NAME, NAME:split or "
                             f"NAME:split:subset,subset (e.g. XNLI:validation:en,zh)")

    def items(i: int) -> tuple[str, ...] | None:
        return (tuple(p for p in parts[i].split(",") if p) or None) if len(parts) > i else None
    return Selection(parts[0], items(1), items(2))


def mteb_task(name: str) -> Any:
    """mteb's task object for `name` (a fresh one each call: loading mutates it)."""
    try:
        import mteb
    except ImportError:
        raise BenchmarkError(f"benchmark {name!r} needs the mteb package: "
                             f"pip install 'embedgate[benchmarks]'") from None
    try:
        return mteb.get_task(name)
    except KeyError as exc:
        raise BenchmarkError(f"benchmark {name!r}: {exc.args[0] if exc.args else exc}") from None


def mteb_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("mteb")


def task_instruction(task: Any) -> str:
    """The task description an instruction-tuned model gets (mteb's task prompt for queries, else
    the task type's default prompt), used as the {task} of the profile's query template."""
    prompt = task.metadata.prompt
    if isinstance(prompt, dict):
        prompt = prompt.get("query") or next(iter(prompt.values()), None)
    return prompt or getattr(task, "abstask_prompt", "") or ""


@dataclass(frozen=True, eq=False)
class BenchmarkSpec:
    """One quality test: an mteb task's split and subset. Read like a `TaskSpec` by the scorer;
    `threshold` and `anchor` are the profile's bar and published score, when it has them."""

    name: str                      # TASK/split/subset: the test id and the quality.json key
    task_name: str
    split: str
    subset: str
    kind: str
    main_metric: str               # the kit's name for mteb's main score
    mteb_main_score: str
    dataset_id: str
    revision: str
    instruction: str
    description: str
    data: "BenchmarkData" = field(repr=False)
    threshold: float | None = None
    threshold_source: str = "none"
    anchor: Any = None             # embedgate.quality.anchors.Anchor
    builtin: bool = False

    def load(self) -> PairDataset | RetrievalDataset:
        return self.data.dataset(self)

    def details(self) -> dict[str, Any]:
        """What quality.json keeps about where the benchmark's definition and data came from."""
        located = self.data.origin(self.task_name)
        return {"benchmark": {
            "task": self.task_name, "split": self.split, "subset": self.subset,
            "type": self.kind, "mteb_main_score": self.mteb_main_score,
            "dataset": self.dataset_id, "revision": self.revision, "mteb": mteb_version(),
            "data_from": located.origin if located else None,
            "data_path": str(located.path) if located else None,
            "data_check": self.data.differences.get(self.name, []),
        }}


def _resolve_one(sel: Selection, task: Any) -> list[tuple[str, str]]:
    meta = task.metadata
    if meta.type not in KINDS:
        raise BenchmarkError(f"benchmark {sel.name!r} is an mteb {meta.type} task; the kit runs "
                             f"{', '.join(KINDS)} tasks")
    if meta.modalities != ["text"]:
        raise BenchmarkError(f"benchmark {sel.name!r} has modalities {meta.modalities}; the kit "
                             f"embeds text only")
    kind = KINDS[meta.type]
    if meta.main_score not in MAIN_SCORES[kind]:
        raise BenchmarkError(f"benchmark {sel.name!r}: its main score {meta.main_score!r} is not "
                             f"one the kit computes for {meta.type} "
                             f"({', '.join(MAIN_SCORES[kind])})")
    if getattr(task, "skip_first_result", False):
        raise BenchmarkError(f"benchmark {sel.name!r} skips each query's first result, which the "
                             f"kit's retrieval scoring does not do")
    splits = sel.splits or tuple(meta.eval_splits)
    bad = [s for s in splits if s not in meta.eval_splits]
    if bad:
        raise BenchmarkError(f"benchmark {sel.name!r}: split(s) {bad} are not among mteb's eval "
                             f"splits {list(meta.eval_splits)}")
    known = list(meta.hf_subsets)
    subsets: list[str] = []
    for item in sel.subsets or tuple(known):
        if item in known:
            subsets.append(item)
            continue
        # a language code (ISO 639-3, e.g. "deu") instead of a subset name
        match = [s for s, langs in meta.hf_subsets_to_langscripts.items()
                 if any(ls.split("-")[0] == item for ls in langs)]
        if not match:
            raise BenchmarkError(f"benchmark {sel.name!r}: {item!r} is neither a subset "
                                 f"({', '.join(known)}) nor one of their languages")
        subsets += match
    return [(split, subset) for split in splits for subset in dict.fromkeys(subsets)]


@dataclass
class BenchmarkData:
    """Loads each mteb task's data once per session, for every split and subset asked of it,
    through mteb's own loader and transform; converts one (split, subset) at a time."""

    locator: DataLocator
    datasets_cache: Path | None = None
    _wanted: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    _tasks: dict[str, Any] = field(default_factory=dict)
    _located: dict[str, Located] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict)
    _stats: dict[str, Any] = field(default_factory=dict)
    _absent: dict[str, dict[str, Any]] = field(default_factory=dict)
    differences: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def want(self, task_name: str, split: str, subset: str) -> None:
        splits, subsets = self._wanted.setdefault(task_name, ([], []))
        for value, into in ((split, splits), (subset, subsets)):
            if value not in into:
                into.append(value)

    def origin(self, task_name: str) -> Located | None:
        return self._located.get(task_name)

    def task(self, task_name: str) -> Any:
        """The loaded mteb task (data in ``task.dataset``), or the error that loading raised."""
        if task_name not in self._tasks:
            try:
                self._tasks[task_name] = self._load(task_name)
            except DatasetError as exc:
                self._tasks[task_name] = exc
        found = self._tasks[task_name]
        if isinstance(found, Exception):
            raise found
        return found

    def _load(self, task_name: str) -> Any:
        task = mteb_task(task_name)
        meta = task.metadata
        dataset_id, revision = meta.dataset["path"], meta.dataset["revision"]
        located = self.locator.locate(dataset_id, revision, names=task_name)
        self._located[task_name] = located
        splits, subsets = self._wanted.get(task_name, (list(meta.eval_splits), meta.hf_subsets))
        # Load what the copy holds of what was asked; a split or subset it lacks fails only
        # its own tests, with the reason (a mirror may hold just the splits a runner needs).
        configs, held_splits = _contents(located.path)
        if meta.is_multilingual:
            task.hf_subsets = [s for s in meta.hf_subsets if s in subsets and (
                configs is None or any(c == s or c.startswith(f"{s}-") for c in configs))]
        load_splits = [s for s in meta.eval_splits
                       if s in splits and (held_splits is None or s in held_splits)]
        self._absent[task_name] = {
            "subsets": sorted(set(subsets) - set(task.hf_subsets)) if meta.is_multilingual
            else [], "splits": sorted(set(splits) - set(load_splits)),
            "held": f"configs {configs}, splits {sorted(held_splits or [])}"}
        task.metadata = meta.model_copy(update={
            "dataset": {**meta.dataset, "path": str(located.path)}, "eval_splits": load_splits})
        if not load_splits or not task.hf_subsets:
            return task  # nothing asked for is in the copy: each test says what is missing
        with _quiet_datasets(self.datasets_cache):
            try:
                task.load_data()
                if KINDS[meta.type] == "retrieval":
                    task.convert_v1_dataset_format_to_v2(num_proc=None)
            except Exception as exc:  # noqa: BLE001 - any loader failure names the copy it read
                raise DatasetError(
                    f"benchmark {task_name}: mteb could not load {dataset_id}@{revision} from "
                    f"{located.describe()} (splits {splits}, subsets {subsets}): "
                    f"{type(exc).__name__}: {str(exc)[:500]}") from exc
        return task

    def dataset(self, spec: BenchmarkSpec) -> PairDataset | RetrievalDataset:
        if spec.name not in self._cache:
            task = self.task(spec.task_name)
            absent = self._absent.get(spec.task_name, {})
            for kind, value in (("subset", spec.subset), ("split", spec.split)):
                if value in absent.get(f"{kind}s", ()):
                    raise DatasetError(
                        f"benchmark {spec.name}: the copy of {spec.dataset_id}@{spec.revision} "
                        f"at {self._located[spec.task_name].path} has no {kind} {value!r} (it "
                        f"has {absent['held']}); fetch the whole repository with `embedgate "
                        f"benchmarks download DIR {spec.task_name}`")
            part = _split_data(task, spec)
            source = (f"mteb {spec.task_name} {spec.dataset_id}@{spec.revision} "
                      f"({self._located[spec.task_name].describe()})")
            with _quiet_datasets(self.datasets_cache):
                data = (_retrieval(task, spec, part, source) if spec.kind == "retrieval"
                        else _pairs(task, spec, part, source))
            if spec.task_name not in self._stats:
                self._stats[spec.task_name] = task.metadata.descriptive_stats or {}
            self.differences[spec.name] = data_differences(self._stats[spec.task_name], spec,
                                                           task.metadata.is_multilingual, data)
            if self.differences[spec.name]:
                data = _with_note(data, "the data differs from what mteb describes for this "
                                        "split: " + "; ".join(self.differences[spec.name]))
            self._cache[spec.name] = data
        return self._cache[spec.name]


@contextlib.contextmanager
def _quiet_datasets(cache: Path | None) -> Iterator[None]:
    """`datasets` writes its prepared copies under the kit's cache, with no progress bars."""
    import datasets
    import datasets.config as config

    old_cache, bars_on = config.HF_DATASETS_CACHE, not datasets.are_progress_bars_disabled()
    if cache is not None:
        config.HF_DATASETS_CACHE = Path(cache)
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        config.HF_DATASETS_CACHE = old_cache
        if bars_on:
            datasets.enable_progress_bars()


def _contents(path: Path) -> tuple[list[str] | None, set[str] | None]:
    """The configs a local dataset repository declares and the splits they hold (None where
    `datasets` cannot tell; mteb's loader then says what is wrong)."""
    from datasets import get_dataset_config_names, get_dataset_split_names

    try:
        configs = list(get_dataset_config_names(str(path)))
        splits = {s for c in configs for s in get_dataset_split_names(str(path), config_name=c)}
    except Exception:  # noqa: BLE001 - an unreadable card: leave the judgement to mteb
        return None, None
    return configs, splits


def _split_data(task: Any, spec: BenchmarkSpec) -> Any:
    data = task.dataset
    part = data[spec.subset] if spec.subset in data else data if spec.subset == "default" else None
    if part is None or spec.split not in part:
        have = sorted(part) if part is not None else sorted(data)
        raise DatasetError(f"benchmark {spec.name}: the copy of {spec.dataset_id}@{spec.revision} "
                           f"has no split {spec.split!r} of subset {spec.subset!r} (it has "
                           f"{have}); fetch the whole repository with `embedgate benchmarks "
                           f"download DIR {spec.task_name}`")
    return part[spec.split]


def _digest(*parts: Any) -> str:
    text = json.dumps(parts, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _pairs(task: Any, spec: BenchmarkSpec, rows: Any, source: str) -> PairDataset:
    if spec.kind == "sts":
        (col1, col2), gold_col = task.column_names, "score"
    else:
        col1, col2, gold_col = (task.input1_column_name, task.input2_column_name,
                                task.label_column_name)
    if not all(isinstance(c, str) for c in (col1, col2)):
        raise DatasetError(f"benchmark {spec.name}: columns {col1!r}, {col2!r} are not text")
    # mteb's v1 layout keeps every pair in one row of lists; its evaluator reads it so too.
    table = rows[0] if spec.kind != "sts" and len(rows) == 1 else rows

    def column(name: str) -> list:
        value = table[name]
        return [value] if isinstance(value, (str, int, float)) else list(value)
    s1, s2 = [str(t) for t in column(col1)], [str(t) for t in column(col2)]
    gold = [float(g) for g in column(gold_col)]
    return PairDataset(spec.name, source, tuple(s1), tuple(s2), tuple(gold),
                       _digest(spec.name, s1, s2, gold))


def _retrieval(task: Any, spec: BenchmarkSpec, split: Any, source: str) -> RetrievalDataset:
    from mteb._create_dataloaders import _retrieval_texts
    from mteb.abstasks.retrieval import _filter_queries_without_positives
    from mteb.types import PromptType

    if split.get("top_ranked"):
        raise DatasetError(f"benchmark {spec.name} reranks given candidates (top_ranked); the "
                           f"kit's retrieval scoring ranks the whole corpus")
    relevant, queries = _filter_queries_without_positives(split["relevant_docs"],
                                                          split["queries"])
    query_text = dict(zip(map(str, queries["id"]), _retrieval_texts(queries, PromptType.query)))
    corpus = dict(zip(map(str, split["corpus"]["id"]),
                      _retrieval_texts(split["corpus"], PromptType.document)))
    qrels = {str(q): {str(d): int(s) for d, s in docs.items()}
             for q, docs in sorted(relevant.items()) if str(q) in query_text}
    return RetrievalDataset(spec.name, source, query_text, corpus, qrels,
                            _digest(spec.name, query_text, corpus, qrels),
                            ignore_identical_ids=bool(getattr(task, "ignore_identical_ids",
                                                              False)))


def _with_note(data: PairDataset | RetrievalDataset, note: str) -> PairDataset | RetrievalDataset:
    import dataclasses

    return dataclasses.replace(data, notes=tuple(data.notes) + (note,))


def data_differences(stats: dict[str, Any], spec: BenchmarkSpec, multilingual: bool,
                     data: PairDataset | RetrievalDataset) -> list[str]:
    """Where the loaded data disagrees with mteb's descriptive statistics of the same split
    (counts and total text lengths): a copy that is not what MTEB scored. [] when it agrees or
    mteb has no statistics for it."""
    stats = stats.get(spec.split) or {}
    if multilingual:
        stats = (stats.get("hf_subset_descriptive_stats") or {}).get(spec.subset) or {}
    if not stats:
        return []
    if isinstance(data, RetrievalDataset):
        ours = {"num_documents": len(data.corpus), "num_queries": len(data.queries),
                "documents_text_statistics": sum(map(len, data.corpus.values())),
                "queries_text_statistics": sum(map(len, data.queries.values()))}
    else:
        ours = {"num_samples": len(data), "text1_statistics": sum(map(len, data.sentence1)),
                "text2_statistics": sum(map(len, data.sentence2))}
    out = []
    for key, value in ours.items():
        theirs = stats.get(key)
        if isinstance(theirs, dict):
            theirs, key = theirs.get("total_text_length"), f"{key.split('_')[0]} characters"
        if theirs is not None and theirs != value:
            out.append(f"{key} {value} here, {theirs} in mteb's statistics")
    return out


def resolve_benchmarks(selections: Iterable[Selection], data: BenchmarkData) -> list[BenchmarkSpec]:
    """One spec per (task, split, subset) the selections name, in order, without repeats."""
    specs: dict[str, BenchmarkSpec] = {}
    tasks: dict[str, Any] = {}
    for sel in selections:
        task = tasks.get(sel.name) or tasks.setdefault(sel.name, mteb_task(sel.name))
        meta = task.metadata
        kind = KINDS.get(meta.type, "")
        try:
            chosen = _resolve_one(sel, task)
        except BenchmarkError as exc:
            if not sel.published:
                raise
            data.notes.append(f"published {sel.name}/{'/'.join(sel.splits + sel.subsets)} not "
                              f"run: {exc}")
            continue
        for split, subset in chosen:
            name = f"{meta.name}/{split}/{subset}"
            if name in specs:
                continue
            data.want(meta.name, split, subset)
            specs[name] = BenchmarkSpec(
                name=name, task_name=meta.name, split=split, subset=subset, kind=kind,
                main_metric=MAIN_SCORES[kind][meta.main_score], mteb_main_score=meta.main_score,
                dataset_id=meta.dataset["path"], revision=meta.dataset["revision"],
                instruction=task_instruction(task),
                description=f"MTEB {meta.type} {meta.name} ({split}, {subset}): "
                            f"{(meta.description or '').strip()[:160]}",
                data=data)
    return list(specs.values())


def selections_from(values: Sequence[str], published: Iterable[str] = ()) -> list[Selection]:
    """The command line's benchmark entries as selections; `profile` stands for each published
    TASK/split/subset of the profile, `none` for nothing."""
    out: list[Selection] = []
    for value in values:
        if value == NONE_KEYWORD:
            continue
        if value == PROFILE_KEYWORD:
            for key in published:
                name, split, subset = key.split("/")
                out.append(Selection(name, (split,), (subset,), published=True))
            continue
        out.append(parse_selection(value))
    return out


__all__ = ["BenchmarkData", "BenchmarkError", "BenchmarkSpec", "Selection", "mteb_task",
           "parse_selection", "resolve_benchmarks", "selections_from", "task_instruction"]
