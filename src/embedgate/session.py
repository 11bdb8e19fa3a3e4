"""The state of one pytest session (kept in config.stash) and the summary printed at the end.

One `RunState` per session: the resolved settings, the server, the quality results and, when the
perf suite runs, its `PerfRun` (figures and gate verdict) as ``run.perf``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pytest

from embedgate.config.options import OptionError, PathBase, cli_values
from embedgate.models.profiles import ModelProfile
from embedgate.perf.state import PerfRun
from embedgate.serve.lifecycle import ServerInfo
from embedgate.config.settings import Settings


# The settings that decide what is served, in the order the summary names their sources.
SUMMARY_SETTINGS = ("backend", "server_url", "model", "profile", "server_args", "startup_timeout",
                    "reports_dir", "cache_dir")


@dataclass
class RunState:
    settings: Settings
    profile: ModelProfile | None = None
    server: ServerInfo | None = None
    server_error: str | None = None
    leftover_pids: list[int] | None = None
    notes: list[str] = field(default_factory=list)
    tasks: list[Any] = field(default_factory=list)
    quality_results: list[Any] = field(default_factory=list)
    compare_lines: list[str] = field(default_factory=list)
    config_table: dict[str, Any] = field(default_factory=dict)
    perf: PerfRun | None = None
    # The server at run time (embedgate.plugin.server / .xdist): the object that owns the launched
    # process, its watchdog, why it died, the xdist directory, the pytest session to stop.
    owned_server: Any = None
    watchdog: Any = None
    server_death: str | None = None
    shared: Any = None
    session: Any = None

    def describe(self) -> dict[str, Any]:
        """Who was measured, for reports: model, profile, backend, server version; no secrets."""
        s, info = self.settings, self.server
        return {
            "model": info.model if info else s.model,
            "served_name": info.served_name if info else None,
            "profile": self.profile.name if self.profile else s.profile,
            "backend": info.backend if info else s.backend,
            "server_version": info.version if info else None,
            "instructions": s.instructions,
            "bootstrap_resamples": s.bootstrap_resamples,
            "dimension": self.profile.embedding_dim if self.profile else None,
            "max_tokens": self.profile.max_tokens if self.profile else None,
        }

    def setting_sources(self) -> list[str]:
        """`name=value (from SOURCE)` for every server setting a source other than the default
        set, so a reader can tell a flag from an env twin, a config key or an implication."""
        s = self.settings
        shown = []
        for key in SUMMARY_SETTINGS:
            source = s.sources.get(key, "default")
            if source != "default":
                value = getattr(s, key)
                value = " ".join(value) if isinstance(value, tuple) else value
                shown.append(f"{key}={value} ({_said(source)})")
        return shown or ["all defaults"]

    def summary_lines(self) -> list[str]:
        s = self.settings
        chosen = self.server.backend if self.server else s.backend
        lines = [f"backend: {chosen} (asked: {s.backend}, {_said(s.sources.get('backend'))}), "
                 f"profile: {s.profile} ({_said(s.sources.get('profile'))})",
                 "settings: " + "; ".join(self.setting_sources())]
        if self.server_error:
            first = self.server_error.splitlines()[0]
            lines.append(f"server: FAILED to start: {first}")
        info = self.server
        if info is not None:
            lines.append(f"server: {info.backend} {info.version or ''} at {info.base_url}, "
                         f"model {info.model} served as {info.served_name!r}")
            if info.startup_s is not None and info.backend != "external":
                rss = (f"{info.rss_at_ready_bytes / 2**20:.0f} MiB"
                       if info.rss_at_ready_bytes else "n/a")
                lines.append(f"server: time to ready {info.startup_s:.1f} s, "
                             f"RSS at ready {rss} (process tree, pid {info.pid})")
            for m in info.members:  # a topology: each replica and the balancer
                each = (f"{m['rss_at_ready_bytes'] / 2**20:.0f} MiB"
                        if m["rss_at_ready_bytes"] else "n/a")
                lines.append(f"server: {m['role']} at {m['base_url']}: RSS at ready {each} "
                             f"(pid {m['pid']}), log {m['log_path']}")
            if self.server_death:
                lines.append("server: DIED during the session: "
                             + self.server_death.splitlines()[0].removeprefix("embedgate: "))
            if info.log_path:
                lines.append(f"server log: {info.log_path}")
            if self.leftover_pids is not None:
                lines.append("server: stopped, no process left" if not self.leftover_pids
                             else f"server: LEFT PROCESSES {self.leftover_pids}")
        return lines + self.notes


def _said(source: str | None) -> str:
    """'from --embedgate-model', or the resolver's own 'implied by ...' as it stands."""
    source = source or "default"
    return source if source.startswith("implied by") else f"from {source}"


RUN_KEY = pytest.StashKey[RunState]()


def get_run(config: pytest.Config) -> RunState:
    return config.stash[RUN_KEY]


def resolve_plugin_options(config: pytest.Config, specs: Any, resolve: Any) -> Any:
    """A plugin's option table for this session (`resolve(cli, env, config table, paths)`); a
    bad value is a usage error naming the option and its source."""
    try:
        return resolve(cli_values(config.getoption, specs), dict(os.environ),
                       get_run(config).config_table, path_base(config))
    except OptionError as exc:
        raise pytest.UsageError(f"embedgate: {exc}") from None


def path_base(config: pytest.Config) -> PathBase:
    """Where this run's relative paths are read from (see `embedgate.config.options`)."""
    return PathBase(config.rootpath, config.invocation_params.dir,
                    has_config_file=config.inipath is not None)
