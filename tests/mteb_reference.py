"""What mteb itself computes for a server, beside what the kit's pytest session reports for it:
helpers for tests/test_benchmarks_e2e.py and scripts/reproduce_published.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable, Sequence

from test_session_e2e import run_pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "tests_quality"


def kit_session(work: Path, url: str, profile: str, mirror: Path, benchmarks: Sequence[str],
                *extra: str, timeout: float = 1800) -> tuple[subprocess.CompletedProcess, dict]:
    """`pytest -m mteb` against a running server, as a user runs it; (result, quality.json)."""
    work.mkdir(parents=True, exist_ok=True)
    args = [str(SUITE), "-m", "mteb", "--embedgate-backend", "external",
            "--embedgate-server-url", url, "--embedgate-profile", profile,
            "--embedgate-benchmark-mirror", str(mirror), *extra]
    for name in benchmarks:
        args += ["--embedgate-benchmark", name]
    result = run_pytest(work, *args, timeout=timeout)
    path = work / "reports" / "quality.json"
    report = json.loads(path.read_text())["datasets"] if path.is_file() else {}
    return result, report


def mteb_scores(specs: Sequence[Any], data: Any, encoder: Any) -> dict[str, float]:
    """mteb's own evaluation (task.evaluate) of each spec's task, split and subset."""
    out = {}
    for spec in specs:
        task = data.task(spec.task_name)
        scores = task.evaluate(encoder, spec.split, subsets_to_run=[spec.subset],
                               encode_kwargs={"batch_size": 32})
        out[spec.name] = float(scores[spec.subset]["main_score"])
    return out


def served_encoder(embed: Callable[[list[str]], Any], profile_name: str) -> Any:
    from embedgate.models.profiles import load_profile
    from embedgate.quality.mteb_model import ServedEncoder

    return ServedEncoder(embed, load_profile(profile_name))
