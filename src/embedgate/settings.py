"""Kit options: one table, resolved command line > environment > ``[tool.embedgate]`` > default.

Every option has the three spellings so CI can set it any way; an invalid value names where it
came from. The API key is the exception: it is read only from the environment, never from the
command line or a file that might be committed, and it never appears in a repr, log or report.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BACKENDS = ("auto", "sglang", "vllm", "hf", "external")
API_KEY_ENV = "EMBEDGATE_API_KEY"


class SettingsError(ValueError):
    """An option value that cannot be used; the message names its source."""


def _backend(value: str) -> str:
    if value not in BACKENDS:
        raise ValueError(f"must be one of {', '.join(BACKENDS)}")
    return value


def _seconds(value: str | float) -> float:
    seconds = float(value)
    if not seconds > 0:
        raise ValueError("must be a positive number of seconds")
    return seconds


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


def _datasets(value: Any) -> tuple[Any, ...]:
    """Dataset entries: config tables, or key=value strings (command line; env: `;`-separated).
    They are checked in tasks.parse_entry, which knows the keys."""
    if isinstance(value, str):
        return tuple(e.strip() for e in value.split(";") if e.strip())
    if isinstance(value, dict):
        return (value,)
    return tuple(value)


def _on_off(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    if value.lower() in ("on", "true", "1", "yes"):
        return True
    if value.lower() in ("off", "false", "0", "no"):
        return False
    raise ValueError("must be on or off")


def _resamples(value: str | int) -> int:
    n = int(value)
    if n < 100:
        raise ValueError("must be at least 100")
    return n


def _args(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(shlex.split(value))
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class OptionSpec:
    """One kit option: its command-line flag, env twin, config key, parser and help."""

    flag: str
    dest: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    metavar: str | None = None
    repeatable: bool = False

    @property
    def env(self) -> str:
        return "EMBEDGATE_" + self.dest.upper()

    @property
    def help_text(self) -> str:
        return (f"{self.help} Env: {self.env}. Config: [tool.embedgate] {self.dest}. "
                f"Default: {self.default!r}.")


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("--backend", "backend", _backend, "auto",
               "Server to launch: sglang (GPU), vllm, hf (sentence-transformers over HTTP), or "
               "external (a running server at --server-url; nothing is launched). auto picks sglang "
               "when it is importable and a CUDA GPU is visible, else vllm, else hf.",
               metavar="{" + ",".join(BACKENDS) + "}"),
    OptionSpec("--model", "model", str, None,
               "Local model directory or hub id to serve. Default: the profile's packaged weights.",
               metavar="PATH_OR_HF_ID"),
    OptionSpec("--profile", "profile", str, "all-minilm-l6-v2",
               "Model profile: a name under fixtures/profiles/ or a path to a .toml file.",
               metavar="NAME_OR_PATH"),
    OptionSpec("--server-url", "server_url", _url, None,
               "Base URL of a running OpenAI-compatible server (implies --backend external).",
               metavar="URL"),
    OptionSpec("--server-arg", "server_args", _args, (),
               "Extra argument passed to the launched server, repeatable "
               "(write --server-arg=--flag=value); the env twin is one shell-quoted string.",
               metavar="ARG", repeatable=True),
    OptionSpec("--startup-timeout", "startup_timeout", _seconds, 300.0,
               "Seconds a launched server may take to become ready.", metavar="S"),
    OptionSpec("--reports-dir", "reports_dir", Path, Path("reports"),
               "Directory for reports and server logs.", metavar="DIR"),
    OptionSpec("--dataset", "datasets", _datasets, (),
               "Add a quality dataset, repeatable: \"name=N task=sts|pair_classification|"
               "retrieval path=P [format=tsv|csv|jsonl|json|parquet|hf_disk|stsb|xnli|beir|"
               "code_pairs] [columns=sentence1,sentence2,score] [label_map=a:1,b:0,c:drop] "
               "[filter=language:de] [split=S] [threshold=X] [instruction=...]\"; in "
               "pyproject one [[tool.embedgate.datasets]] table per dataset.",
               metavar="ENTRY", repeatable=True),
    OptionSpec("--instructions", "instructions", _on_off, True,
               "on: format texts with the profile's instruction templates and each task's "
               "description; off: send texts bare.", metavar="{on,off}"),
    OptionSpec("--bootstrap-resamples", "bootstrap_resamples", _resamples, 1000,
               "Resamples for the 95 percent bootstrap confidence intervals (seed 0).",
               metavar="N"),
    OptionSpec("--baseline", "baseline", Path, None,
               "Reports dir of the accepted run (quality.json, perf.json): at the end of the "
               "session compare this run with it, write compare.md/.html to --reports-dir and "
               "fail the session when the candidate is worse (see `embedgate compare`).",
               metavar="DIR"),
    OptionSpec("--compare-margin", "compare_margins", _args, (),
               "Non-inferiority margin for --baseline, repeatable: 0.02 (all datasets, default "
               "0.01) or DATASET=0.03.", metavar="[DATASET=]M", repeatable=True),
    OptionSpec("--cache-dir", "cache_dir", Path, Path(".embedgate_cache"),
               "Directory for the kit's caches, temp files and built models (never $HOME).",
               metavar="DIR"),
)


@dataclass(frozen=True)
class Settings:
    """Resolved kit options. Relative paths are resolved against the pytest rootdir."""

    backend: str = "auto"
    model: str | None = None
    profile: str = "all-minilm-l6-v2"
    server_url: str | None = None
    server_args: tuple[str, ...] = ()
    startup_timeout: float = 300.0
    reports_dir: Path = Path("reports")
    cache_dir: Path = Path(".embedgate_cache")
    datasets: tuple[Any, ...] = ()
    instructions: bool = True
    bootstrap_resamples: int = 1000
    baseline: Path | None = None
    compare_margins: tuple[str, ...] = ()
    api_key: str | None = field(default=None, repr=False)
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.api_key,) if self.api_key else ()


def read_config_table(rootdir: Path) -> dict[str, Any]:
    """The ``[tool.embedgate]`` table of rootdir/pyproject.toml, or {} when there is none."""
    pyproject = rootdir / "pyproject.toml"
    if not pyproject.is_file():
        return {}
    with pyproject.open("rb") as fh:
        table = tomllib.load(fh).get("tool", {}).get("embedgate", {})
    known = {spec.dest for spec in OPTIONS}
    unknown = sorted(set(table) - known)
    if unknown:
        raise SettingsError(f"{pyproject}: unknown [tool.embedgate] key(s) {unknown}; "
                            f"known: {sorted(known)}")
    return table


def resolve(cli: dict[str, Any], env: dict[str, str], config: dict[str, Any],
            rootdir: Path) -> Settings:
    """Pick each option from the first source that sets it and validate it there."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in OPTIONS:
        cli_value = cli.get(spec.dest)
        if spec.repeatable and cli_value == []:
            cli_value = None
        candidates = (
            (cli_value, spec.flag),
            (env.get(spec.env), f"env {spec.env}"),
            (config.get(spec.dest), f"[tool.embedgate] {spec.dest}"),
        )
        raw, where = next(((v, w) for v, w in candidates if v not in (None, "")),
                          (None, "default"))
        if raw is None:
            values[spec.dest], sources[spec.dest] = spec.default, "default"
            continue
        try:
            values[spec.dest] = spec.parse(raw)
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"{spec.flag}: {raw!r} (from {where}) {exc}") from None
        sources[spec.dest] = where
    for key in ("reports_dir", "cache_dir", "baseline"):
        if values[key] is None:
            continue
        path = Path(values[key]).expanduser()
        values[key] = path if path.is_absolute() else (rootdir / path)
    if values["server_url"] and values["backend"] == "auto":
        values["backend"] = "external"
    if values["backend"] == "external" and not values["server_url"]:
        raise SettingsError("--backend external needs --server-url (or EMBEDGATE_SERVER_URL)")
    if values["server_url"] and values["backend"] != "external":
        raise SettingsError(f"--server-url is only for --backend external, not "
                            f"{values['backend']!r} (from {sources['backend']})")
    return Settings(**values, api_key=env.get(API_KEY_ENV) or None, sources=sources)


def from_environment(cli: dict[str, Any], rootdir: Path) -> Settings:
    return resolve(cli, dict(os.environ), read_config_table(rootdir), rootdir)
