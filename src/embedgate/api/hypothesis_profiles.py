"""Hypothesis profiles for the api suite's fuzz tests: ``ci``, ``dev`` and ``nightly``.

Why: every example is an HTTP round trip to a real model, so the example budget sets the suite's
wall time. ``ci`` is small, derandomised (the same examples on every run, so a red CI is
reproducible) and has no deadline (a server's latency is not a property); ``dev`` explores more
and keeps a local example database; ``nightly`` explores a lot. Every profile prints the
``@reproduce_failure`` blob with the falsifying example.

The profile is chosen by hypothesis' own ``--hypothesis-profile NAME``, else the environment
variable ``EMBEDGATE_HYPOTHESIS_PROFILE``, else ``ci``.
"""

from __future__ import annotations

import os
from typing import Mapping

from hypothesis import HealthCheck, Phase, settings

__all__ = ["PROFILES", "ENV", "DEFAULT", "register", "choose", "activate"]

ENV = "EMBEDGATE_HYPOTHESIS_PROFILE"
OPTION = "--hypothesis-profile"
DEFAULT = "ci"

# Examples are slow (a request each) and drawn from big strategies; these checks would
# only complain about that, not about the server.
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
          HealthCheck.function_scoped_fixture]

PROFILES: dict[str, dict] = {
    # Bounded and reproducible: the api suite stays well under its 10-minute CI budget. No
    # shrinking: against a slow or broken server it can take minutes, and the derandomised
    # failing example (printed with its blob) already reproduces.
    "ci": dict(max_examples=25, derandomize=True, database=None, deadline=None,
               print_blob=True, suppress_health_check=_QUIET,
               phases=[Phase.explicit, Phase.generate]),
    # Local work: more examples, failures saved to .hypothesis/ and replayed first next time.
    "dev": dict(max_examples=60, deadline=None, print_blob=True, suppress_health_check=_QUIET),
    # Scheduled runs: a wide search, still without a deadline.
    "nightly": dict(max_examples=400, deadline=None, print_blob=True,
                    suppress_health_check=_QUIET),
}


def register() -> None:
    """Register (or re-register) the three profiles with hypothesis."""
    for name, values in PROFILES.items():
        settings.register_profile(name, **values)


def choose(option: str | None, env: Mapping[str, str]) -> tuple[str, str]:
    """The profile name and where it came from: the option, then the environment, then ci."""
    if option:
        return option, OPTION
    if env.get(ENV):
        return env[ENV], f"env {ENV}"
    return DEFAULT, "default"


def activate(option: str | None, env: Mapping[str, str] | None = None) -> str:
    """Register the profiles and load the chosen one; an unknown name is a ValueError."""
    register()
    name, source = choose(option, os.environ if env is None else env)
    try:
        # Looked up first: load_profile marks an unknown name current before it fails.
        settings.get_profile(name)
    except Exception as exc:  # hypothesis raises InvalidArgument for unknown names
        raise ValueError(f"hypothesis profile {name!r} (from {source}) is not registered; "
                         f"embedgate registers {sorted(PROFILES)}") from exc
    settings.load_profile(name)
    return name
