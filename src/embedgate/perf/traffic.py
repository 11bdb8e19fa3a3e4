"""What the open-loop scenarios send: synthetic texts, a file of texts or requests, batch mixes.

A workload turns (count, attempt) into request inputs, deterministically: the same workload,
seed and attempt give the same requests, so two runs send the same bytes at the same offsets
(`requests_digest` says so in one string). Sources:

- the kit's synthetic texts (`workload.WordStream`, at the calibrated "short" length), distinct
  for every request of the session;
- a text file: ``.tsv``/``.csv`` with a header (column ``text``, or name one with ``PATH#COLUMN``,
  e.g. a quality dataset's ``validation.tsv#sentence1``), or ``.txt`` with one text per line;
  texts keep their natural lengths and are cycled in file order;
- a JSONL file of requests, one object per line: ``{"input": "text"}`` or
  ``{"input": ["a", "b"]}`` (a batch, kept as is), with an optional ``"timestamp"`` in
  milliseconds (or ``"timestamp_s"`` in seconds) for trace replay. AIPerf's ``single_turn``
  lines (``{"text": ...}``, ``"texts"``, ``"timestamp"`` in ms) read the same, so one file can
  drive both clients.

A batch mix (``1:0.8,8:0.2``) draws each request's number of inputs from texts; JSONL batches
keep their own size.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

class WorkloadError(ValueError):
    """A workload file or batch mix that cannot be used; the message names the file and line."""


def parse_batch_mix(text: str) -> tuple[tuple[int, float], ...]:
    """``8`` (every request 8 inputs) or ``1:0.8,8:0.2`` (sizes with weights, normalised)."""
    items = [p.strip() for p in str(text).split(",") if p.strip()]
    mix = []
    for item in items:
        size, _, weight = item.partition(":")
        try:
            pair = (int(size), float(weight) if weight else 1.0)
        except ValueError:
            raise WorkloadError(f"batch mix {text!r}: expected SIZE[:WEIGHT],... e.g. "
                                f"1:0.8,8:0.2") from None
        if pair[0] < 1 or pair[1] <= 0:
            raise WorkloadError(f"batch mix {text!r}: sizes must be >= 1 and weights > 0")
        mix.append(pair)
    if not mix:
        raise WorkloadError("a batch mix needs at least one size")
    total = sum(w for _, w in mix)
    return tuple((s, w / total) for s, w in mix)


def _texts_from_table(path: Path, column: str | None) -> list[str]:
    delimiter = "\t" if path.suffix == ".tsv" else ","
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter, quoting=csv.QUOTE_NONE
                                if delimiter == "\t" else csv.QUOTE_MINIMAL)
        names = reader.fieldnames or []
        col = column or ("text" if "text" in names else None)
        if col is None or col not in names:
            raise WorkloadError(f"{path}: no column {column or 'text'!r} (columns: {names}); "
                                f"name one as {path}#COLUMN")
        return [row[col] for row in reader if row.get(col)]


@dataclass
class FileRequests:
    inputs: list[Any]
    timestamps: np.ndarray | None


def _requests_from_jsonl(path: Path) -> FileRequests:
    inputs, stamps = [], []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise WorkloadError(f"{path}:{line_no}: not JSON: {exc}") from None
            value = (row.get("input", row.get("text", row.get("texts")))
                     if isinstance(row, dict) else None)
            ok = isinstance(value, str) and value or (
                isinstance(value, list) and value and all(isinstance(v, str) for v in value))
            if not ok:
                raise WorkloadError(f"{path}:{line_no}: expected {{\"input\": \"text\"}} or "
                                    f"{{\"input\": [\"text\", ...]}}, got {line.strip()[:120]}")
            inputs.append(value)
            if "timestamp" in row:  # milliseconds, as in AIPerf's single_turn and traces
                stamps.append(float(row["timestamp"]) / 1e3)
            elif "timestamp_s" in row:
                stamps.append(float(row["timestamp_s"]))
    if not inputs:
        raise WorkloadError(f"{path}: no requests in it")
    if stamps and len(stamps) != len(inputs):
        raise WorkloadError(f"{path}: {len(stamps)} of {len(inputs)} lines have a timestamp; a "
                            f"trace needs one on every line or none")
    return FileRequests(inputs, np.asarray(stamps) if stamps else None)


@dataclass
class Workload:
    """A source of request inputs; ``inputs(count, attempt)`` is deterministic."""

    kind: str                                   # "synthetic" | "texts" | "requests"
    description: dict[str, Any]
    _texts: Callable[[int, int], list[str]]     # (count, first) -> texts
    batch_mix: tuple[tuple[int, float], ...] = ((1, 1.0),)
    seed: int = 0
    fixed: list[Any] | None = None              # JSONL requests, used as they are
    timestamps: np.ndarray | None = None

    def inputs(self, count: int, attempt: int) -> list[Any]:
        """`count` request inputs for one run (attempt) of a point."""
        if self.fixed is not None:
            first = attempt * count
            return [self.fixed[(first + k) % len(self.fixed)] for k in range(count)]
        sizes, weights = zip(*self.batch_mix)
        rng = np.random.default_rng([self.seed, attempt])
        batch = rng.choice(np.asarray(sizes), p=np.asarray(weights), size=count)
        texts = self._texts(int(batch.sum()), attempt)
        out, at = [], 0
        for b in batch.tolist():  # a bare string for one input, as most clients send it
            out.append(texts[at] if b == 1 else texts[at:at + b])
            at += b
        return out

    def as_dict(self) -> dict[str, Any]:
        return {**self.description, "workload_kind": self.kind, "workload_seed": self.seed,
                "batch_mix": [list(p) for p in self.batch_mix]
                if self.fixed is None else "as in the file",
                "trace_timestamps": self.timestamps is not None}


def synthetic(texts: Callable[[int, int], list[str]], *, n_words: int,
              batch_mix=((1, 1.0),), seed: int = 0) -> Workload:
    """The kit's own distinct texts; texts(count, attempt) comes from the perf session."""
    return Workload("synthetic", {"workload": "synthetic", "input_words": n_words}, texts,
                    tuple(batch_mix), seed)


def _digest_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def from_file(spec: str | Path, *, batch_mix=((1, 1.0),), seed: int = 0) -> Workload:
    """``PATH`` or ``PATH#COLUMN``: JSONL requests, or TSV/CSV/TXT texts."""
    text = str(spec)
    path_text, _, column = text.partition("#")
    path = Path(path_text)
    if not path.is_file():
        raise WorkloadError(f"perf workload {path} not found (a .jsonl of requests, or a "
                            f".tsv/.csv/.txt of texts)")
    about = {"workload": str(path), "workload_sha256": _digest_file(path),
             "workload_column": column or None}
    if path.suffix == ".jsonl":
        found = _requests_from_jsonl(path)
        return Workload("requests", {**about, "workload_requests": len(found.inputs)},
                        lambda c, f: [], seed=seed, fixed=found.inputs,
                        timestamps=found.timestamps)
    if path.suffix in (".tsv", ".csv"):
        texts = _texts_from_table(path, column or None)
    elif path.suffix == ".txt":
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                 if line.strip()]
    else:
        raise WorkloadError(f"perf workload {path}: expected .jsonl, .tsv, .csv or .txt")
    if not texts:
        raise WorkloadError(f"perf workload {path}: no texts in it")
    distinct = len(set(texts))

    def window(count: int, attempt: int) -> list[str]:
        first = attempt * count
        return [texts[(first + k) % len(texts)] for k in range(count)]

    return Workload("texts", {**about, "workload_texts": len(texts),
                              "workload_distinct_texts": distinct}, window,
                    tuple(batch_mix), seed)


def requests_digest(bodies: Sequence[bytes]) -> str:
    """sha256 over the request bodies in order: equal digests, the same requests sent."""
    h = hashlib.sha256()
    for body in bodies:
        h.update(len(body).to_bytes(8, "little"))
        h.update(body)
    return h.hexdigest()
