"""Dataset loaders. A missing file or column fails with the path and the expected format."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path


class DatasetError(ValueError):
    """A dataset that cannot be read as asked; says the path and the expected format."""


@dataclass(frozen=True)
class PairDataset:
    """Sentence pairs with a gold score (STS 0-5 or a 0/1 label)."""

    name: str
    path: Path
    sentence1: tuple[str, ...]
    sentence2: tuple[str, ...]
    gold: tuple[float, ...]
    sha256: str

    def __len__(self) -> int:
        return len(self.gold)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_pair_tsv(path: str | Path, *, name: str | None = None,
                  columns: tuple[str, str, str] = ("sentence1", "sentence2", "score"),
                  delimiter: str = "\t") -> PairDataset:
    """Read a delimited file with a header row holding the three named columns."""
    path = Path(path)
    expected = (f"a UTF-8 {'TSV' if delimiter == chr(9) else 'CSV'} file with a header row "
                f"and columns {', '.join(columns)}")
    if not path.is_file():
        raise DatasetError(f"dataset file {path} not found; expected {expected}")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter, quoting=csv.QUOTE_NONE)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {missing} (header is "
                               f"{reader.fieldnames}); expected {expected}")
        s1, s2, gold = [], [], []
        for line_no, row in enumerate(reader, start=2):
            try:
                gold.append(float(row[columns[2]]))
            except (TypeError, ValueError):
                raise DatasetError(f"{path}:{line_no}: {columns[2]} {row[columns[2]]!r} is not "
                                   f"a number; expected {expected}") from None
            s1.append(row[columns[0]])
            s2.append(row[columns[1]])
    if not gold:
        raise DatasetError(f"{path}: no rows; expected {expected}")
    return PairDataset(name or path.stem, path, tuple(s1), tuple(s2), tuple(gold),
                       file_sha256(path))
