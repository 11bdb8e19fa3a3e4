"""Where the kit's shipped data lives: the checkout's ``fixtures/`` or its copy inside the wheel.

The wheel carries ``fixtures/`` as ``embedgate/fixtures`` and the suites as ``embedgate/suites``,
so an installed kit reads the same profiles, datasets and workload texts as the checkout.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def fixtures_dir() -> Path:
    """The installed copy when there is one, else the checkout's ``fixtures/``."""
    installed = _PACKAGE_DIR / "fixtures"
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parents[1] / "fixtures"


def profiles_dir() -> Path:
    return fixtures_dir() / "profiles"


def datasets_dir() -> Path:
    return fixtures_dir() / "datasets"


def backends_dir() -> Path:
    """Per-backend API behaviour tables and SGLang's flag list (fixtures/backends/)."""
    return fixtures_dir() / "backends"
