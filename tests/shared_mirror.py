"""A benchmark mirror built from the real data at ../shared/data, for the kit's tests and scripts.

Each dataset is written as the Hugging Face repository that mteb's task points to would hold it
(same dataset id and pinned revision in the path, same configs, split names and columns), so mteb's
own loader and transform read it: ATEC and AFQMC validation (C-MTEB), PAWS-X zh test (mteb/PAWSX),
XNLI dev in 10 languages (mteb/xnli; labels 0 entailment, 1 neutral, 2 contradiction, as the hub
copy). CosQA is different on purpose: its mteb corpus is not in ../shared/data, so "CosQA" here
is the CoSQA dev pairs laid out as mteb's CosQA task reads them, with documents made longer than
MiniLM's 256 tokens, to show truncation; its score is not MTEB's published CosQA figure.

Written to a temporary folder at test time; never copied into the repository.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from embedgate.quality.mirror import mirror_path, write_repo

# ../shared/data beside the checkout; EMBEDGATE_SHARED_DATA names it for a checkout elsewhere.
SHARED = Path(os.environ.get("EMBEDGATE_SHARED_DATA")
              or Path(__file__).resolve().parents[2] / "shared" / "data")
XNLI_DEV_LANGS = ("ar", "de", "en", "es", "fr", "ru", "sw", "th", "vi", "zh")
XNLI_LABELS = {"entailment": 0, "neutral": 1, "contradiction": 2}
PINS = {  # mteb 2.26.24's dataset id and revision of each task (checked in the tests)
    "ATEC": ("C-MTEB/ATEC", "0f319b1142f28d00e055a6770f3f726ae9b7d865"),
    "AFQMC": ("C-MTEB/AFQMC", "b44c3b011063adb25877c13823db83bb193913c4"),
    "PAWSX": ("mteb/PAWSX", "bd129d4230ee0551b5469c566bced8da75abae0a"),
    "XNLI": ("mteb/xnli", "09698e0180d87dc247ca447d3a1248b931ac0cdb"),
    "CosQA": ("CoIR-Retrieval/cosqa", "bc5efb7e9d437246ce393ed19d772e08e4a79535"),
}
LONG_DOC_SNIPPETS = 4  # a long CosQA document: its own snippet, then the next three


def _tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def _sts(path: Path):
    from datasets import Dataset

    rows = _tsv(path)
    return Dataset.from_dict({"sentence1": [r["sentence1"] for r in rows],
                              "sentence2": [r["sentence2"] for r in rows],
                              "score": [int(r["label"]) for r in rows]})


def _xnli(lang: str):
    from datasets import Dataset

    rows = _tsv(SHARED / "xnli_dev" / f"dev.{lang}.tsv")
    return Dataset.from_dict({"premise": [r["sentence1"] for r in rows],
                              "hypothesis": [r["sentence2"] for r in rows],
                              "label": [XNLI_LABELS[r["label"]] for r in rows]})


def cosqa_long(limit: int | None = None) -> dict[str, dict]:
    """CoSQA dev as retrieval: each labelled-1 query against every distinct snippet; every other
    document is made long (its snippet followed by the next ones), the relevant code first."""
    rows = [json.loads(line) for line in
            (SHARED / "cosqa_dev" / "dev_pairs.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()][:limit]
    codes = list(dict.fromkeys(r["code"] for r in rows))
    corpus = {}
    for i, code in enumerate(codes):
        parts = codes[i:i + LONG_DOC_SNIPPETS] if i % 2 == 0 else [code]
        corpus[f"c{i}"] = "\n\n".join(parts).strip()
    code_id = {c: f"c{i}" for i, c in enumerate(codes)}
    queries, qrels = {}, []
    for r in rows:
        if int(r["label"]) == 1:
            qid = queries.setdefault(r["query"], f"q{len(queries)}")
            qrels.append((qid, code_id[r["code"]]))
    return {"corpus": corpus, "queries": {v: k for k, v in queries.items()},
            "qrels": sorted(set(qrels))}


def _cosqa_configs(limit: int | None):
    from datasets import Dataset

    data = cosqa_long(limit)
    return {
        "corpus": {"corpus": Dataset.from_dict({"_id": list(data["corpus"]),
                                                "title": [""] * len(data["corpus"]),
                                                "text": list(data["corpus"].values())})},
        "queries": {"queries": Dataset.from_dict({"_id": list(data["queries"]),
                                                  "text": list(data["queries"].values())})},
        "default": {"test": Dataset.from_dict({"query-id": [q for q, _ in data["qrels"]],
                                               "corpus-id": [d for _, d in data["qrels"]],
                                               "score": [1] * len(data["qrels"])})},
    }


def build(root: Path, tasks: tuple[str, ...] = tuple(PINS), *, xnli_langs=XNLI_DEV_LANGS,
          cosqa_limit: int | None = None, layout=mirror_path) -> Path:
    """Write the named tasks' mirror copies under root; `layout(root, id, revision)` gives each
    repository's folder (a mirror by default; a hub-cache snapshot for the cache test)."""
    builders = {
        "ATEC": lambda: {"default": {"validation": _sts(SHARED / "atec" / "validation.tsv")}},
        "AFQMC": lambda: {"default": {"validation": _sts(SHARED / "afqmc" / "validation.tsv")}},
        "PAWSX": lambda: {"default": {"test": _sts(SHARED / "pawsx_zh" / "test.tsv")}},
        "XNLI": lambda: {lang: {"validation": _xnli(lang)} for lang in xnli_langs},
        "CosQA": lambda: _cosqa_configs(cosqa_limit),
    }
    for task in tasks:
        dataset_id, revision = PINS[task]
        write_repo(layout(root, dataset_id, revision), builders[task]())
    return root


def hub_cache_layout(hub: Path, dataset_id: str, revision: str) -> Path:
    """A snapshot folder as huggingface_hub keeps it in HF_HOME/hub, with the ref pointing at it."""
    repo = hub / f"datasets--{dataset_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return repo / "snapshots" / revision
