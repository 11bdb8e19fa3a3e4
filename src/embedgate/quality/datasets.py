"""Dataset loaders for the formats users have, into two shapes: pairs and retrieval.

Pairs (STS, pair classification): TSV/CSV/JSONL/parquet/HF-on-disk tables with a column
mapping, GLUE STS-B tsv, XNLI tsv. Retrieval: BEIR folders (corpus.jsonl, queries.jsonl, qrels
tsv) and labelled query/code pairs (CoSQA, CodeSearchNet jsonl). A file or column that is not
there fails with the path and the format that was expected; nothing is read from the network.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

PAIR_ROLES = ("sentence1", "sentence2", "score")
TABLE_FORMATS = ("tsv", "csv", "jsonl", "json", "parquet", "hf_disk")
PAIR_FORMATS = TABLE_FORMATS + ("stsb", "xnli")
RETRIEVAL_FORMATS = ("beir", "code_pairs")
XNLI_LABELS = {"entailment": 1, "contradiction": 0, "neutral": None,
               "0": 1, "2": 0, "1": None}  # the numeric ids the HF XNLI dataset uses


class DatasetError(ValueError):
    """A dataset that cannot be read as asked; says the path and the expected format."""


@dataclass(frozen=True)
class PairDataset:
    """Text pairs with a gold score (STS 0-5, or a 0/1 label)."""

    name: str
    source: str
    sentence1: tuple[str, ...]
    sentence2: tuple[str, ...]
    gold: tuple[float, ...]
    sha256: str
    item_ids: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.item_ids:
            object.__setattr__(self, "item_ids", tuple(str(i) for i in range(len(self.gold))))

    def __len__(self) -> int:
        return len(self.gold)


@dataclass(frozen=True)
class RetrievalDataset:
    """Queries, a corpus and graded relevance judgements (qrels), keyed by id."""

    name: str
    source: str
    queries: Mapping[str, str]
    corpus: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]
    sha256: str
    query_languages: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    ignore_identical_ids: bool = False  # a document with the query's id is not a result (MTEB)

    def __len__(self) -> int:
        return len(self.qrels)


def content_sha256(path: Path) -> str:
    """Hash of a file, or of every file under a folder (names and bytes, sorted)."""
    digest = hashlib.sha256()
    if path.is_file():
        digest.update(path.read_bytes())
        return digest.hexdigest()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(child.relative_to(path)).encode() + b"\0")
        digest.update(child.read_bytes())
    return digest.hexdigest()


def guess_format(path: Path) -> str:
    if path.is_dir():
        if (path / "corpus.jsonl").is_file():
            return "beir"
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            return "hf_disk"
        raise DatasetError(f"{path}: a folder that is neither a BEIR dataset (corpus.jsonl, "
                           f"queries.jsonl, qrels/<split>.tsv) nor a Hugging Face dataset saved "
                           f"with save_to_disk (dataset_info.json); say format= explicitly")
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("tsv", "csv", "jsonl", "json", "parquet"):
        return suffix
    raise DatasetError(f"{path}: cannot tell the format from the suffix {path.suffix!r}; give "
                       f"format= one of {', '.join(PAIR_FORMATS + RETRIEVAL_FORMATS)}")


def _require(path: Path, expected: str, *, folder: bool = False) -> None:
    ok = path.is_dir() if folder else path.is_file()
    if not ok:
        raise DatasetError(f"dataset {'folder' if folder else 'file'} {path} not found; "
                           f"expected {expected}")


def read_rows(path: Path, fmt: str, *, split: str | None = None,
              columns: str = "") -> list[dict[str, Any]]:
    """Rows of a table file as dicts (header row / JSON keys / parquet columns)."""
    expected = {
        "tsv": "a UTF-8 TSV file with a header row", "csv": "a UTF-8 CSV file with a header row",
        "jsonl": "a UTF-8 file with one JSON object per line", "json": "a JSON list of objects",
        "parquet": "a parquet file", "hf_disk": "a folder written by datasets' save_to_disk",
    }[fmt]
    if columns:
        expected = f"{expected} holding {columns}"
    _require(path, expected, folder=fmt == "hf_disk")
    if fmt in ("tsv", "csv"):
        with path.open(newline="", encoding="utf-8") as fh:
            if fmt == "tsv":
                # QUOTE_NONE: GLUE / XNLI / C-MTEB tsv files contain bare quote characters.
                reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            else:
                reader = csv.DictReader(fh)
            return list(reader)
    if fmt == "jsonl":
        rows = []
        with path.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DatasetError(f"{path}:{line_no}: not JSON ({exc}); expected "
                                           f"{expected}") from None
        return rows
    if fmt == "json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise DatasetError(f"{path}: top level is {type(data).__name__}; expected {expected}")
        return data
    try:
        import datasets as hf_datasets
    except ImportError:
        raise DatasetError(f"{path}: reading {fmt} needs the `datasets` package "
                           f"(pip install 'embedgate[datasets]')") from None
    if fmt == "parquet":
        table = hf_datasets.Dataset.from_parquet(str(path))
    else:
        table = hf_datasets.load_from_disk(str(path))
        if isinstance(table, hf_datasets.DatasetDict):
            if split is None or split not in table:
                raise DatasetError(f"{path}: a DatasetDict with splits {list(table)}; give "
                                   f"split= one of them")
            table = table[split]
    return table.to_list()


def _column(rows: list[dict[str, Any]], column: str, path: Path, expected: str) -> None:
    if rows and column not in rows[0]:
        raise DatasetError(f"{path}: missing column {column!r} (columns are {list(rows[0])}); "
                           f"expected {expected}")


def load_pairs(path: str | Path, *, name: str | None = None, format: str = "auto",
               columns: Mapping[str, str] | None = None,
               label_map: Mapping[str, float | None] | None = None,
               filter: Mapping[str, str] | None = None, split: str | None = None) -> PairDataset:
    """Text pairs with a gold score. `columns` maps sentence1/sentence2/score (and optionally
    id) to the file's column names; `label_map` turns string labels into scores, None drops the
    row; `filter` keeps rows whose column equals a value (e.g. {"language": "de"})."""
    path = Path(path)
    fmt = guess_format(path) if format == "auto" else format
    if fmt not in PAIR_FORMATS:
        raise DatasetError(f"{path}: format {fmt!r} is not a pair format; use one of "
                           f"{', '.join(PAIR_FORMATS)}")
    cols = dict(zip(PAIR_ROLES, PAIR_ROLES))
    if fmt == "xnli":
        cols["score"] = "label"
        label_map = XNLI_LABELS if label_map is None else label_map
    cols.update(columns or {})
    table_fmt = {"stsb": "tsv", "xnli": "tsv"}.get(fmt, fmt)
    wanted = (f"columns {cols['sentence1']}, {cols['sentence2']}, {cols['score']}"
              + (f" (labels {sorted(label_map)})" if label_map else ""))
    expected = f"{table_fmt} with {wanted}"
    rows = read_rows(path, table_fmt, split=split, columns=wanted)
    if fmt == "xnli" and rows and "label" not in rows[0] and "gold_label" in rows[0] \
            and not (columns or {}).get("score"):
        cols["score"] = "gold_label"  # the original XNLI 1.0 release names it so
    for role in ("sentence1", "sentence2", "score") + (("id",) if "id" in cols else ()):
        _column(rows, cols[role], path, expected)
    for key in (filter or {}):
        _column(rows, key, path, expected)
    s1, s2, gold, ids = [], [], [], []
    dropped = 0
    for i, row in enumerate(rows):
        if filter and any(str(row.get(k)) != str(v) for k, v in filter.items()):
            continue
        raw = row[cols["score"]]
        if label_map is not None:
            key = str(raw).strip()
            if key not in label_map:
                raise DatasetError(f"{path}: row {i + 1}: label {raw!r} is not one of "
                                   f"{sorted(label_map)}; expected {expected}")
            value = label_map[key]
            if value is None:
                dropped += 1
                continue
        else:
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise DatasetError(f"{path}: row {i + 1}: {cols['score']} {raw!r} is not a "
                                   f"number; expected {expected}") from None
        s1.append(str(row[cols["sentence1"]]))
        s2.append(str(row[cols["sentence2"]]))
        gold.append(float(value))
        ids.append(str(row[cols["id"]]) if "id" in cols else str(i))
    if not gold:
        raise DatasetError(f"{path}: no usable rows" + (f" (filter {dict(filter)})" if filter
                                                        else "") + f"; expected {expected}")
    notes = (f"{dropped} rows dropped by the label map (e.g. neutral)",) if dropped else ()
    return PairDataset(name or path.stem, str(path), tuple(s1), tuple(s2), tuple(gold),
                       content_sha256(path), tuple(ids), notes)


def load_parallel_crosslingual(folder: str | Path, *, name: str | None = None,
                               pivot: str = "en", columns: Mapping[str, str] | None = None,
                               label_map: Mapping[str, float | None] | None = None
                               ) -> PairDataset:
    """Cross-lingual pairs from parallel per-language files (<lang>.tsv with shared ids): the
    pivot language's first sentence against every other language's second sentence."""
    folder = Path(folder)
    expected = "a folder of parallel <lang>.tsv files sharing an id column"
    _require(folder, expected, folder=True)
    cols = {"sentence1": "premise", "sentence2": "hypothesis", "score": "label", "id": "id",
            **(columns or {})}
    label_map = XNLI_LABELS if label_map is None else label_map
    files = sorted(folder.glob("*.tsv"))
    if not any(f.stem == pivot for f in files):
        raise DatasetError(f"{folder}: no {pivot}.tsv (the pivot language); expected {expected}")
    base = load_pairs(folder / f"{pivot}.tsv", columns=cols, label_map=label_map)
    premise = dict(zip(base.item_ids, base.sentence1))
    s1, s2, gold, ids = [], [], [], []
    for f in files:
        if f.stem == pivot:
            continue
        other = load_pairs(f, columns=cols, label_map=label_map)
        for item, hyp, g in zip(other.item_ids, other.sentence2, other.gold):
            if item in premise:
                s1.append(premise[item])
                s2.append(hyp)
                gold.append(g)
                ids.append(f"{pivot}-{f.stem}:{item}")
    return PairDataset(name or folder.name, str(folder), tuple(s1), tuple(s2), tuple(gold),
                       content_sha256(folder), tuple(ids), base.notes)


def load_pooled_languages(folder: str | Path, *, name: str | None = None,
                          columns: Mapping[str, str] | None = None,
                          label_map: Mapping[str, float | None] | None = None) -> PairDataset:
    """Monolingual pairs of every <lang>.tsv in a folder pooled into one set, item ids
    ``<lang>:<id>`` so scores can still be split by language. One language's few pairs cannot
    tell a model from a random encoder; the pool can."""
    folder = Path(folder)
    expected = "a folder of <lang>.tsv pair files"
    _require(folder, expected, folder=True)
    files = sorted(folder.glob("*.tsv"))
    if not files:
        raise DatasetError(f"{folder}: no .tsv files; expected {expected}")
    cols = {"sentence1": "premise", "sentence2": "hypothesis", "score": "label", "id": "id",
            **(columns or {})}
    label_map = XNLI_LABELS if label_map is None else label_map
    s1, s2, gold, ids, dropped = [], [], [], [], 0
    for f in files:
        part = load_pairs(f, columns=cols, label_map=label_map)
        s1 += part.sentence1
        s2 += part.sentence2
        gold += part.gold
        ids += [f"{f.stem}:{i}" for i in part.item_ids]
        dropped += sum(int(n.split()[0]) for n in part.notes if n.endswith("(e.g. neutral)"))
    notes = (f"{dropped} rows dropped by the label map (e.g. neutral)",) if dropped else ()
    return PairDataset(name or folder.name, str(folder), tuple(s1), tuple(s2), tuple(gold),
                       content_sha256(folder), tuple(ids), notes)


def _qrels_file(folder: Path, split: str | None) -> Path:
    candidates = ([folder / "qrels" / f"{split}.tsv"] if split else
                  [folder / "qrels.tsv", folder / "qrels" / "test.tsv", folder / "qrels" / "dev.tsv"])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{folder}: no qrels file (looked for "
                       f"{', '.join(str(c) for c in candidates)}); expected a BEIR folder with "
                       f"corpus.jsonl, queries.jsonl and qrels/<split>.tsv "
                       f"(query-id, corpus-id, score)")


def load_beir(folder: str | Path, *, name: str | None = None,
              split: str | None = None) -> RetrievalDataset:
    """A BEIR folder; document text is title + " " + text, stripped, as MTEB builds it."""
    folder = Path(folder)
    expected = ("a BEIR folder: corpus.jsonl ({_id, title, text}), queries.jsonl ({_id, text}), "
                "qrels/<split>.tsv or qrels.tsv (query-id, corpus-id, score)")
    _require(folder, expected, folder=True)
    corpus_rows = read_rows(folder / "corpus.jsonl", "jsonl")
    query_rows = read_rows(folder / "queries.jsonl", "jsonl")
    for rows, file, keys in ((corpus_rows, "corpus.jsonl", ("_id", "text")),
                             (query_rows, "queries.jsonl", ("_id", "text"))):
        for key in keys:
            _column(rows, key, folder / file, expected)
    corpus = {str(r["_id"]): (f"{r['title']} {r['text']}" if r.get("title")
                              else str(r["text"])).strip() for r in corpus_rows}
    queries = {str(r["_id"]): str(r["text"]) for r in query_rows}
    languages = {str(r["_id"]): str(r["lang"]) for r in query_rows if r.get("lang")}
    qrels_path = _qrels_file(folder, split)
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            parts = line.rstrip("\n").split("\t")
            if line_no == 1 and not parts[-1].lstrip("-").isdigit():
                continue  # header
            if len(parts) < 3:
                raise DatasetError(f"{qrels_path}:{line_no}: expected query-id, corpus-id, score")
            qid, did, score = parts[0], parts[-2], int(parts[-1])
            if qid not in queries or did not in corpus:
                raise DatasetError(f"{qrels_path}:{line_no}: unknown id {qid!r} or {did!r}")
            if score > 0:
                qrels.setdefault(qid, {})[did] = score
    if not qrels:
        raise DatasetError(f"{qrels_path}: no relevant (score > 0) judgements")
    return RetrievalDataset(name or folder.name, str(folder), queries, corpus, qrels,
                            content_sha256(folder), languages)


def load_code_pairs(path: str | Path, *, name: str | None = None,
                    columns: Mapping[str, str] | None = None) -> RetrievalDataset:
    """Labelled query/code pairs (CoSQA: query, code, label; CodeSearchNet: docstring, code)
    as retrieval: each query against every distinct snippet, label-1 pairs relevant."""
    path = Path(path)
    rows = read_rows(path, guess_format(path) if path.suffix != ".jsonl" else "jsonl")
    first = rows[0] if rows else {}
    query_col = next((c for c in ("query", "doc", "docstring", "func_documentation_string")
                      if c in first), "query")
    code_col = next((c for c in ("code", "func_code_string", "original_string") if c in first),
                    "code")
    cols = {"query": query_col, "code": code_col,
            "label": "label" if "label" in first else None, **(columns or {})}
    expected = (f"JSONL rows with {cols['query']}, {cols['code']}"
                + (f", {cols['label']} (1 relevant)" if cols["label"] else ""))
    for role in ("query", "code") + (("label",) if cols["label"] else ()):
        _column(rows, cols[role], path, expected)
    queries: dict[str, str] = {}
    corpus: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    query_ids: dict[str, str] = {}
    code_ids: dict[str, str] = {}
    for row in rows:
        qtext, ctext = str(row[cols["query"]]), str(row[cols["code"]])
        qid = query_ids.setdefault(qtext, f"q{len(query_ids)}")
        did = code_ids.setdefault(ctext, f"c{len(code_ids)}")
        queries[qid], corpus[did] = qtext, ctext
        if cols["label"] is None or int(row[cols["label"]]) > 0:
            qrels.setdefault(qid, {})[did] = 1
    unjudged = len(queries) - len(qrels)
    notes = (f"{unjudged} queries without a relevant snippet are not scored",) if unjudged else ()
    return RetrievalDataset(name or path.stem, str(path), queries, corpus, qrels,
                            content_sha256(path), notes=notes)


def load_retrieval(path: str | Path, *, name: str | None = None, format: str = "auto",
                   columns: Mapping[str, str] | None = None,
                   split: str | None = None) -> RetrievalDataset:
    path = Path(path)
    fmt = format
    if fmt == "auto":
        fmt = "beir" if path.is_dir() else "code_pairs"
    if fmt == "beir":
        return load_beir(path, name=name, split=split)
    if fmt == "code_pairs":
        return load_code_pairs(path, name=name, columns=columns)
    raise DatasetError(f"{path}: format {fmt!r} is not a retrieval format; use one of "
                       f"{', '.join(RETRIEVAL_FORMATS)}")


def unique(texts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(texts))
