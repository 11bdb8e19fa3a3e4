"""Where a benchmark's data comes from: a mirror folder, the Hugging Face cache, then the hub.

A mirror is a folder the user names (``--embedgate-benchmark-mirror DIR``, e.g. on an offline GPU
runner). ``DIR/<dataset id>/<revision>/`` holds the files of the Hugging Face dataset repository
at that pinned revision, as ``huggingface_hub.snapshot_download(local_dir=...)`` writes them, so
mteb's own loader reads it unchanged. ``embedgate benchmarks download DIR`` fills one on a machine
that has the hub. Without a mirror copy, the hub cache is tried offline (the kit's, then the
default one), then the hub itself unless ``HF_HUB_OFFLINE`` is set. Data found nowhere is a
`BenchmarkDataMissing` that names the dataset id, the revision, where it looked and the command
that fetches it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from embedgate.quality.datasets import DatasetError

DOWNLOAD_HINT = "embedgate benchmarks download DIR {names}"


def mirror_path(mirror: Path, dataset_id: str, revision: str) -> Path:
    """Where a mirror keeps one dataset repository at one revision."""
    return Path(mirror) / dataset_id / revision


def hub_offline(env: Mapping[str, str] | None = None) -> bool:
    """HF_HUB_OFFLINE or HF_DATASETS_OFFLINE says not to ask the hub."""
    env = os.environ if env is None else env
    return any(str(env.get(k, "")).lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


class BenchmarkDataMissing(DatasetError):
    """A benchmark whose pinned dataset is in no mirror, no cache and not reachable on the hub."""


@dataclass(frozen=True)
class Located:
    """A local copy of a dataset repository at one revision, and where it was found."""

    path: Path
    origin: str  # "mirror", "hf-cache" or "hub"

    def describe(self) -> str:
        return f"{self.origin} {self.path}"


@dataclass
class DataLocator:
    """Finds dataset repositories for one session; remembers a hub that failed, so a run with
    many missing benchmarks waits for the hub once, not once per benchmark."""

    mirror: Path | None = None
    cache_dirs: Sequence[Path | None] = (None,)
    download_dir: Path | None = None       # where the hub's files go (None: the default cache)
    _hub_error: str | None = field(default=None, repr=False)

    def locate(self, dataset_id: str, revision: str, *, names: str = "") -> Located:
        tried: list[str] = []
        if self.mirror is not None:
            candidate = mirror_path(self.mirror, dataset_id, revision)
            if candidate.is_dir():
                return Located(candidate, "mirror")
            tried.append(f"mirror: no folder {candidate}")
        else:
            tried.append("mirror: none given (--embedgate-benchmark-mirror)")
        found = _cached_snapshot(dataset_id, revision, self.cache_dirs, tried)
        if found is not None:
            return Located(found, "hf-cache")
        if hub_offline():
            tried.append("hub: not tried (HF_HUB_OFFLINE is set)")
        elif self._hub_error is not None:
            tried.append(f"hub: not tried again ({self._hub_error})")
        else:
            try:
                return Located(Path(fetch_snapshot(dataset_id, revision,
                                                   cache_dir=self.download_dir)), "hub")
            except Exception as exc:  # noqa: BLE001 - any hub failure means "not reachable"
                self._hub_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                tried.append(f"hub: {self._hub_error}")
        raise BenchmarkDataMissing(
            f"dataset {dataset_id} at revision {revision} (pinned by mteb) was not found; "
            f"looked in: {'; '.join(tried)}. On a machine with the Hugging Face hub run "
            f"`{DOWNLOAD_HINT.format(names=names or '').strip()}`, copy DIR here and pass "
            f"--embedgate-benchmark-mirror DIR")


def _cached_snapshot(dataset_id: str, revision: str, cache_dirs: Iterable[Path | None],
                     tried: list[str]) -> Path | None:
    """The hub cache's snapshot of the dataset at `revision`, never downloading."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        tried.append("hf-cache: huggingface_hub is not installed")
        return None
    for cache in cache_dirs:
        where = str(cache) if cache else "the default hub cache"
        try:
            return Path(snapshot_download(dataset_id, repo_type="dataset", revision=revision,
                                          cache_dir=cache, local_files_only=True))
        except Exception as exc:  # noqa: BLE001 - any failure means "not cached here"
            tried.append(f"hf-cache: not in {where} ({type(exc).__name__})")
    return None


def fetch_snapshot(dataset_id: str, revision: str, *, cache_dir: Path | None = None,
                   local_dir: Path | None = None) -> str:
    """Download the dataset repository at `revision` (the hub's own client; may raise)."""
    from huggingface_hub import snapshot_download

    return snapshot_download(dataset_id, repo_type="dataset", revision=revision,
                             cache_dir=cache_dir, local_dir=local_dir)


def download(mirror: Path, targets: Iterable[tuple[str, str]]) -> list[Path]:
    """Fill a mirror: each (dataset id, revision) at mirror/<id>/<revision>; once per pair."""
    written = []
    for dataset_id, revision in dict.fromkeys(targets):
        dest = mirror_path(mirror, dataset_id, revision)
        dest.mkdir(parents=True, exist_ok=True)
        fetch_snapshot(dataset_id, revision, local_dir=dest)
        written.append(dest)
    return written


def write_repo(root: Path, configs: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write datasets as a Hugging Face dataset repository would hold them: one parquet file per
    config and split, and a README.md whose YAML ``configs`` maps them (what `datasets` reads).

    `configs` maps config name -> split name -> a `datasets.Dataset`.
    """
    import datasets

    root.mkdir(parents=True, exist_ok=True)
    lines = ["---", "configs:"]
    bars_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        for config, splits in configs.items():
            lines += [f"- config_name: {config}", "  data_files:"]
            for split, table in splits.items():
                rel = f"{config}/{split}-00000-of-00001.parquet"
                (root / config).mkdir(parents=True, exist_ok=True)
                table.to_parquet(str(root / rel))
                lines += [f"  - split: {split}", f"    path: {rel}"]
    finally:
        if bars_on:
            datasets.enable_progress_bars()
    (root / "README.md").write_text("\n".join(lines + ["---", ""]), encoding="utf-8")
    return root


__all__ = ["BenchmarkDataMissing", "DataLocator", "Located", "download", "fetch_snapshot",
           "mirror_path", "write_repo", "hub_offline"]
