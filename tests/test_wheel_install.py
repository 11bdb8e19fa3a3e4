"""End to end: the kit installed from its wheel behaves like the checkout.

The wheel carries ``fixtures/`` as ``embedgate/fixtures`` and the three suites as
``embedgate/suites/<name>`` (pyproject force-include), so an installed kit scores the same
datasets, reads the same profiles and perf texts, and runs its suites with
``pytest --pyargs embedgate.suites`` from any directory. Here the wheel is built from this
checkout and installed into a fresh venv whose heavy dependencies (torch, vLLM, ...) are this
venv's own, seen through a ``.pth`` file, so nothing is downloaded or reinstalled. The suites run
from a temporary directory outside the repository, with kit options given as ``EMBEDGATE_*``
environment variables. Each installed suite run starts vLLM on CPU once (~40 s).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from embedgate.quality.tasks import builtin_tasks
from test_session_e2e import clean_env, needs_vllm

ROOT = Path(__file__).resolve().parents[1]
SUITES = ("tests_quality", "tests_api", "tests_perf")
DEFAULT_PROFILE = "all-minilm-l6-v2"  # the kit's default; the checkout run below scores it too
KIT_OWN = ("embedgate", "embedgate-*.dist-info", "__editable__*embedgate*", "_*embedgate*.pth")

pytestmark = [
    pytest.mark.timeout(600),
    needs_vllm,
    pytest.mark.skipif(importlib.util.find_spec("hatchling") is None,
                       reason="building the wheel needs hatchling: pip install 'embedgate[test]'"),
]


@dataclass(frozen=True)
class InstalledKit:
    wheel: Path
    python: Path          # the fresh venv's interpreter
    site: Path            # the fresh venv's site-packages
    work: Path            # an empty directory outside the repository, the suites' cwd
    cache: Path           # a short EMBEDGATE_CACHE_DIR (vLLM caps unix socket paths)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in clean_env().items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env.update(EMBEDGATE_CACHE_DIR=str(self.cache), EMBEDGATE_BACKEND="vllm")
        return env

    def python_says(self, code: str) -> str:
        done = subprocess.run([str(self.python), "-c", code], cwd=self.work, env=self.env(),
                              text=True, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip()

    def run_suites(self, marker: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.python), "-m", "pytest", "--pyargs", "embedgate.suites", "-m", marker,
             "-p", "no:cacheprovider"],
            cwd=self.work, env=self.env(), text=True, capture_output=True, timeout=420)


def kit_own_entries(site: Path) -> set[str]:
    """The top-level names of `site` that belong to an installed embedgate (its package, its
    metadata, the editable install's hooks and whatever its RECORD lists)."""
    own = {p.name for p in site.iterdir() if any(fnmatch.fnmatch(p.name, pat) for pat in KIT_OWN)}
    for info in site.glob("embedgate-*.dist-info"):
        record = info / "RECORD"
        lines = record.read_text().splitlines() if record.is_file() else []
        own |= {line.split(",")[0].split("/")[0] for line in lines}
    return own - {"", "..", "__pycache__"}


def link_dependencies(site: Path, into: Path) -> set[str]:
    """Symlink every entry of `site` except the kit's own into `into`; return the names left out."""
    into.mkdir()
    own = kit_own_entries(site)
    for entry in site.iterdir():
        if entry.name not in own:
            (into / entry.name).symlink_to(entry)
    return own


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
                          text=True, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (built,) = out.glob("embedgate-*.whl")
    return built


@pytest.fixture(scope="module")
def installed_kit(wheel, tmp_path_factory) -> Iterator[InstalledKit]:
    base = tmp_path_factory.mktemp("installed")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, text=True, capture_output=True).stdout.strip())
    left_out = link_dependencies(Path(sysconfig.get_paths()["purelib"]), base / "deps")
    assert left_out, "this venv's own embedgate install was not found, so not left out"
    (site / "checkout_venv_dependencies.pth").write_text(f"{base / 'deps'}\n")
    work = base / "work"
    work.mkdir()
    cache = Path(tempfile.mkdtemp(prefix="egw-"))
    kit = InstalledKit(wheel=wheel, python=python, site=site, work=work, cache=cache)
    done = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                           str(wheel)], env=kit.env(), text=True, capture_output=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    yield kit
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="module")
def installed_quality_run(installed_kit) -> subprocess.CompletedProcess:
    return installed_kit.run_suites("quality")


def test_wheel_carries_the_profiles_datasets_and_suites_but_not_the_kit_tests(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    fixtures = {f"embedgate/fixtures/{p.relative_to(ROOT / 'fixtures').as_posix()}"
                for p in (ROOT / "fixtures").rglob("*") if p.is_file()}
    assert fixtures and fixtures <= names, sorted(fixtures - names)
    assert any(n.startswith("embedgate/fixtures/profiles/") and n.endswith(".toml")
               for n in names)
    for suite in SUITES:
        shipped = {f"embedgate/suites/{suite}/{p.relative_to(ROOT / suite).as_posix()}"
                   for p in (ROOT / suite).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts}
        assert shipped and shipped <= names, (suite, sorted(shipped - names))
    assert "embedgate/suites/__init__.py" in names
    tops = {n.split("/")[0] for n in names}
    assert tops == {"embedgate", wheel.name.split("-py")[0] + ".dist-info"}, tops
    stray_tests = [n for n in names if not n.startswith("embedgate/suites/")
                   and Path(n).name.startswith(("test_", "conftest"))]
    assert stray_tests == []


@pytest.mark.long
def test_installed_kit_imports_its_own_copy_and_data(installed_kit):
    where = json.loads(installed_kit.python_says(
        "import json, sys, embedgate, embedgate.resources as r\n"
        "from embedgate.plugin.perf import CORPUS\n"
        "print(json.dumps({'package': embedgate.__file__, 'fixtures': str(r.fixtures_dir()),"
        " 'corpus': str(CORPUS), 'path': sys.path}))"))
    site = installed_kit.site
    assert not [p for p in where["path"] if p.startswith(str(ROOT))], where["path"]
    assert Path(where["package"]) == site / "embedgate" / "__init__.py"
    assert Path(where["fixtures"]) == site / "embedgate" / "fixtures"
    # the perf workload texts are the installed copy, never a stand-in
    assert Path(where["corpus"]) == site / "embedgate" / "fixtures" / "datasets" / "sts_en.tsv"
    assert Path(where["corpus"]).is_file()


@pytest.mark.long
def test_installed_quality_suite_passes_outside_the_repository(installed_kit,
                                                               installed_quality_run):
    result = installed_quality_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # defaults resolve against the invocation directory when pytest found no ini/pyproject
    assert (installed_kit.work / "reports" / "quality.json").is_file(), (
        f"quality.json not under {installed_kit.work}: "
        f"{sorted(str(p) for p in installed_kit.site.rglob('quality.json'))}")


@pytest.mark.long
def test_installed_quality_scores_the_checkout_datasets(installed_kit, installed_quality_run):
    report = json.loads((installed_kit.work / "reports" / "quality.json").read_text())
    expected = {task.name: task.load().sha256 for task in builtin_tasks()}
    assert {name: entry["dataset"]["sha256"] for name, entry in report["datasets"].items()} \
        == expected
    assert all(str(installed_kit.site) in entry["dataset"]["source"]
               for entry in report["datasets"].values())


@pytest.mark.long
def test_installed_quality_scores_equal_the_checkout_run(installed_kit, installed_quality_run,
                                                         quality_run):
    # the checkout's own run of the same suite and model (shared with test_quality_e2e)
    checkout_result, checkout_reports = quality_run(DEFAULT_PROFILE)
    assert checkout_result.returncode == 0, checkout_result.stdout[-3000:]
    checkout = json.loads((checkout_reports / "quality.json").read_text())["datasets"]
    installed = json.loads((installed_kit.work / "reports" / "quality.json").read_text())
    assert installed["profile"] == DEFAULT_PROFILE
    assert set(installed["datasets"]) == set(checkout)
    for name, entry in installed["datasets"].items():
        assert entry["dataset"]["sha256"] == checkout[name]["dataset"]["sha256"], name
        assert entry["score"] == pytest.approx(checkout[name]["score"], abs=1e-6), name


@pytest.mark.long
def test_installed_api_suite_passes_outside_the_repository(installed_kit):
    result = installed_kit.run_suites("api")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
