"""The command-line flags SGLang accepts, read from its source without importing it.

Why: SGLang cannot be installed or run without a CUDA GPU, yet a flag the kit passes that SGLang
does not know stops the server before it serves anything. SGLang 0.5.23 builds its parser from
annotated dataclass fields (``sglang/srt/arg_groups/fields/*.py``: ``name: A[T, "help"]`` or
``A[T, Arg(cli_name=..., aliases=[...], no_cli=...)]``, registered by
``arg_groups/arg_utils.py:add_cli_args_from_dataclass``) plus a few literal
``parser.add_argument("--...")`` calls in ``sglang/srt/server_args.py:ServerArgs.add_cli_args``.
`extract_flags` reads both with `ast`, so it works on an unzipped wheel. `known_flags` is the
checked-in list of names derived that way from the version the kit targets
(``fixtures/backends/sglang-flags.txt``); regenerate it with
``python -m embedgate.serve.sglang_flags SGLANG_PACKAGE_DIR > fixtures/backends/sglang-flags.txt``.

``sglang serve`` (``sglang/cli/serve.py:30-59``) strips one flag of its own, ``--model-type``,
before the server's parser sees the rest: `SERVE_ONLY_FLAGS`.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from embedgate.resources import backends_dir

__all__ = ["FLAGS_FILE", "SERVE_ONLY_FLAGS", "extract_flags", "known_flags", "flags_file_version",
           "source_version"]

FLAGS_FILE = "sglang-flags.txt"
SERVE_ONLY_FLAGS = frozenset({"--model-type"})


def _call_name(node: ast.AST) -> str:
    return node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else ""


def _field_flags(name: str, annotation: ast.AST) -> list[str]:
    """Flags of one ``name: A[T, meta]`` field; [] when it has no CLI surface."""
    if not (isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name)
            and annotation.value.id == "A"):
        return []
    parts = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else []
    meta = parts[1] if len(parts) > 1 else None
    if isinstance(meta, ast.Constant) and isinstance(meta.value, str):
        return ["--" + name.replace("_", "-")]
    if _call_name(meta) != "Arg":
        return []
    kwargs = {kw.arg: kw.value for kw in meta.keywords}
    if isinstance(kwargs.get("no_cli"), ast.Constant) and kwargs["no_cli"].value is True:
        return []
    cli = kwargs.get("cli_name")
    flags = [cli.value if isinstance(cli, ast.Constant) else "--" + name.replace("_", "-")]
    aliases = kwargs.get("aliases")
    if isinstance(aliases, (ast.List, ast.Tuple)):
        flags += [a.value for a in aliases.elts if isinstance(a, ast.Constant)]
    return flags


def _added_arguments(tree: ast.AST) -> set[str]:
    """Every ``*.add_argument("--flag", ...)`` string literal in a module."""
    found = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument"):
            found |= {a.value for a in node.args
                      if isinstance(a, ast.Constant) and isinstance(a.value, str)
                      and a.value.startswith("--")}
    return found


def extract_flags(package_dir: Path) -> set[str]:
    """The flags of ``sglang serve`` / ``python -m sglang.launch_server`` in an SGLang source tree
    (the ``sglang`` package directory of an unzipped wheel or a checkout)."""
    package_dir = Path(package_dir)
    fields_dir = package_dir / "srt" / "arg_groups" / "fields"
    server_args = package_dir / "srt" / "server_args.py"
    if not fields_dir.is_dir() or not server_args.is_file():
        raise FileNotFoundError(f"{package_dir} is not an SGLang package directory with "
                                f"srt/arg_groups/fields/ and srt/server_args.py")
    flags: set[str] = set()
    for path in sorted(fields_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        flags.update(_field_flags(item.target.id, item.annotation))
    flags |= _added_arguments(ast.parse(server_args.read_text(), str(server_args)))
    return flags


def source_version(package_dir: Path) -> str:
    """The ``__version__ = '...'`` literal of ``sglang/_version.py``, or "unknown"."""
    path = Path(package_dir) / "_version.py"
    found = re.search(r"^__version__\b.*?=\s*['\"]([^'\"]+)['\"]", path.read_text(), re.M) \
        if path.is_file() else None
    return found.group(1) if found else "unknown"


def _flags_path() -> Path:
    return backends_dir() / FLAGS_FILE


def known_flags() -> frozenset[str]:
    """The checked-in flag names (one per line; ``#`` lines are comments)."""
    lines = _flags_path().read_text().splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def flags_file_version() -> str:
    """The SGLang version the checked-in list was derived from (its ``# version:`` line)."""
    for line in _flags_path().read_text().splitlines():
        if line.startswith("# version:"):
            return line.split(":", 1)[1].strip()
    raise ValueError(f"{_flags_path()} has no '# version:' line")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m embedgate.serve.sglang_flags SGLANG_PACKAGE_DIR")
    package_dir = Path(args[0])
    version = source_version(package_dir)
    print(f"# Flags accepted by SGLang's server parser, derived by embedgate.serve.sglang_flags\n"
          f"# from sglang/srt/arg_groups/fields/*.py (annotated fields) and the literal\n"
          f"# add_argument calls of sglang/srt/server_args.py (ServerArgs.add_cli_args).\n"
          f"# version: {version}")
    for flag in sorted(extract_flags(package_dir)):
        print(flag)


if __name__ == "__main__":
    main()
