"""The package's layering (written down in embedgate/__init__.py) holds for every import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import embedgate

PACKAGE = Path(embedgate.__file__).parent
LAYERS = {
    "resources": 0, "config": 0, "suites": 0,
    "models": 1,
    "serve": 2,
    "quality": 3, "api": 3, "perf": 3,
    "verdict": 4,
    "report": 5,
    "session": 6, "cli": 6,
    "plugin": 7,
}


def part_of(module: str) -> str | None:
    """The top-level part of an embedgate module name, or None for the package root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "embedgate" else None


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every embedgate module a file imports, at any depth (function-level imports count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names
                      if node.module == "embedgate"]
    return [(line, m) for line, m in found if m == "embedgate" or m.startswith("embedgate.")]


def violations(root: Path) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        own = rel.parts[0].removesuffix(".py")
        if own == "__init__":
            continue
        if own not in LAYERS:
            problems.append(f"{rel}: part {own!r} has no layer; add it to the layering")
            continue
        for line, module in imported_modules(path):
            target = part_of(module)
            if target is None or target == own:
                continue
            if target not in LAYERS:
                continue  # a name imported from the package root, like __version__
            if LAYERS[target] > LAYERS[own] or (LAYERS[target] == LAYERS[own] == 3):
                problems.append(f"{rel}:{line}: {own} (layer {LAYERS[own]}) imports {module} "
                                f"(layer {LAYERS[target]})")
    return problems


def test_no_module_imports_a_higher_layer_or_a_sibling_suite_package():
    assert violations(PACKAGE) == []


def test_every_part_is_placed_in_a_layer_and_documents_what_it_may_import():
    parts = {p.name.removesuffix(".py") for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.name != "__init__.py"}
    parts.discard("__pycache__")
    assert parts == set(LAYERS)
    for part in parts:
        init = PACKAGE / part / "__init__.py"
        if init.is_file() and part not in ("suites", "plugin"):
            doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
            assert "May import:" in doc, f"{part}/__init__.py must say what it may import"


@pytest.mark.parametrize("source, bad", [
    ("from embedgate.report import markdown\n", "quality (layer 3) imports embedgate.report"),
    ("import embedgate.perf.rules\n", "quality (layer 3) imports embedgate.perf.rules"),
    ("def f():\n    from embedgate.plugin import path_base\n", "imports embedgate.plugin"),
    ("from embedgate import cli\n", "imports embedgate.cli"),
])
def test_the_check_catches_an_import_that_breaks_the_layering(tmp_path, source, bad):
    (tmp_path / "quality").mkdir()
    (tmp_path / "quality" / "bad.py").write_text(source)
    (tmp_path / "quality" / "good.py").write_text("from embedgate.serve import client\n"
                                                  "from embedgate.quality import metrics\n")
    found = violations(tmp_path)
    assert len(found) == 1 and bad in found[0] and found[0].startswith("quality/bad.py:")
