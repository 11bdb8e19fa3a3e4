"""reports/quality.json: one file per run holding every dataset's scores and per-item values.

The schema is versioned; `embedgate compare` reads two of these and refuses mismatched ones.
No API key or token is ever written (settings are listed without secrets).
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

SCHEMA = "embedgate.quality/1"


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null so every JSON reader can load the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def quality_document(results: Iterable[Any], *, run: dict[str, Any]) -> dict[str, Any]:
    datasets = {r.name: r.as_json() for r in results}
    return _clean({"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                            "python": platform.python_version()},
                   **run, "datasets": datasets})


def write_quality_json(path: Path, document: dict[str, Any]) -> Path:
    """Write atomically so a crashed run never leaves half a report for CI to read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".quality-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(document, fh, ensure_ascii=False, indent=1, allow_nan=False)
    os.replace(tmp, path)
    return path


def read_quality_json(path: Path) -> dict[str, Any]:
    with Path(path).open(encoding="utf-8") as fh:
        document = json.load(fh)
    if document.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {document.get('schema')!r}, expected {SCHEMA!r}")
    return document
