"""Session state of one pytest run (kept in config.stash) and the summary printed at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from embedgate.model_profiles import ModelProfile
from embedgate.server import ServerInfo
from embedgate.settings import Settings


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

    def summary_lines(self) -> list[str]:
        s = self.settings
        chosen = self.server.backend if self.server else s.backend
        lines = [f"backend: {chosen} (asked: {s.backend}, from {s.sources.get('backend')}), "
                 f"profile: {s.profile}"]
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
            if info.log_path:
                lines.append(f"server log: {info.log_path}")
            if self.leftover_pids is not None:
                lines.append("server: stopped, no process left" if not self.leftover_pids
                             else f"server: LEFT PROCESSES {self.leftover_pids}")
        return lines + self.notes


RUN_KEY = pytest.StashKey[RunState]()


def get_run(config: pytest.Config) -> RunState:
    return config.stash[RUN_KEY]
