"""The kit's own options (server, model, data, reports) and the resolved `Settings`.

The table is resolved by `embedgate.config.options` like every other option of the kit. The API
key is the exception: it is read only from the environment, never from the command line or a file
that might be committed, and it never appears in a repr, log or report.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedgate.config.options import (OptionError, OptionSpec, PathBase, on_off, one_of,
                                      resolve_values)

BACKENDS = ("auto", "sglang", "vllm", "hf", "external")
SERVER_KINDS = ("auto", "openai", "sglang", "vllm", "hf")  # fixtures/backends/<kind>.toml
SGLANG_LAUNCH_FORMS = ("serve", "launch_server", "router")
BALANCERS = ("nginx", "sglang-router")  # embedgate.serve.fleet
RANKINGS = ("dense", "faiss", "chunked")  # embedgate.quality.ranking
API_KEY_ENV = "EMBEDGATE_API_KEY"


SettingsError = OptionError


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


def _not_shown(value: str) -> str:
    if value not in ("fail", "pass"):
        raise ValueError("must be fail or pass")
    return value


def _resamples(value: str | int) -> int:
    n = int(value)
    if n < 100:
        raise ValueError("must be at least 100")
    return n


def _count(value: str | int) -> int:
    n = int(value)
    if n < 1:
        raise ValueError("must be a whole number of at least 1")
    return n


def _args(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(shlex.split(value))
    return tuple(str(v) for v in value)


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("backend", "backend", _backend, "auto",
               "Server to launch: sglang (GPU), vllm, hf (sentence-transformers over HTTP), or "
               "external (a running server at --embedgate-server-url; nothing is launched). auto picks sglang "
               "when it is importable and a CUDA GPU is visible, else vllm, else hf.",
               metavar="{" + ",".join(BACKENDS) + "}"),
    OptionSpec("model", "model", str, None,
               "Local model directory or hub id to serve. Default: the profile's packaged weights.",
               metavar="PATH_OR_HF_ID"),
    OptionSpec("profile", "profile", str, "all-minilm-l6-v2",
               "Model profile: a name under fixtures/profiles/ or a path to a .toml file.",
               metavar="NAME_OR_PATH"),
    OptionSpec("server-url", "server_url", _url, None,
               "Base URL of a running OpenAI-compatible server (implies --embedgate-backend external).",
               metavar="URL"),
    OptionSpec("server-arg", "server_args", _args, (),
               "Extra argument passed to the launched server, repeatable "
               "(write --embedgate-server-arg=--flag=value); the env twin is one shell-quoted string.",
               metavar="ARG", repeatable=True),
    OptionSpec("server-kind", "server_kind", one_of(*SERVER_KINDS), "auto",
               "Whose documented API behaviour the api suite expects "
               "(fixtures/backends/KIND.toml): auto takes the launched backend's, and judges an external server by the OpenAI "
               "spec alone (openai); name sglang, vllm or hf for a server you run yourself.",
               metavar="{" + ",".join(SERVER_KINDS) + "}"),
    OptionSpec("sglang-launch", "sglang_launch", one_of(*SGLANG_LAUNCH_FORMS), "serve",
               "How the sglang backend is started: serve (`sglang serve`, SGLang's recommended "
               "entry point), launch_server (`python -m sglang.launch_server`) or router "
               "(`python -m sglang_router.launch_server`: --embedgate-data-parallel workers "
               "behind SGLang's router).",
               metavar="{" + ",".join(SGLANG_LAUNCH_FORMS) + "}"),
    OptionSpec("replicas", "replicas", _count, 1,
               "Launch N replicas of the backend, each on its own loopback port, behind "
               "--embedgate-balancer; the set is the one server under test.", metavar="N"),
    OptionSpec("balancer", "balancer", one_of(*BALANCERS), BALANCERS[0], "The balancer in front of --embedgate-replicas above 1, round robin, no retry (a dead "
               "replica's requests count as errors): nginx (transparent; Debian nginx-light) or "
               "sglang-router (PyPI; it parses request bodies itself).", metavar="{" + ",".join(BALANCERS) + "}"),
    OptionSpec("data-parallel", "data_parallel", _count, 1,
               "Data-parallel engine copies inside one server: vLLM --data-parallel-size, "
               "SGLang --dp-size.", metavar="N"),
    OptionSpec("tensor-parallel", "tensor_parallel", _count, 1,
               "GPUs one model copy is split over: vLLM --tensor-parallel-size, SGLang "
               "--tp-size.", metavar="N"),
    OptionSpec("startup-timeout", "startup_timeout", _seconds, 300.0,
               "Seconds a launched server may take to become ready.", metavar="S"),
    OptionSpec("reports-dir", "reports_dir", Path, Path("reports"),
               "Directory for reports and server logs.", metavar="DIR"),
    OptionSpec("dataset", "datasets", _datasets, (),
               "Add a quality dataset, repeatable: \"name=N task=sts|pair_classification|"
               "retrieval path=P [format=tsv|csv|jsonl|json|parquet|hf_disk|stsb|xnli|beir|"
               "code_pairs] [columns=sentence1,sentence2,score] [label_map=a:1,b:0,c:drop] "
               "[filter=language:de] [split=S] [threshold=X] [instruction=...]\"; in "
               "pyproject one [[tool.embedgate.datasets]] table per dataset.",
               metavar="ENTRY", repeatable=True),
    OptionSpec("ranking", "ranking", one_of(*RANKINGS), RANKINGS[0], metavar="{"
               + ",".join(RANKINGS) + "}", help="How retrieval ranks the corpus, all exact: "
               "dense (every document vector in memory), faiss (an exact inner-product index, "
               "faiss-cpu) or chunked (the corpus in blocks, a running top-k: memory bounded by "
               "one block)."),
    OptionSpec("encode-url", "encode_urls", _args, (), metavar="URL|replicas", repeatable=True,
               help="Spread the quality suite's encode batches over these base URLs (round "
               "robin), repeatable; `replicas`: each launched replica directly."),
    OptionSpec("encode-batch-size", "encode_batch_size", _count, None,
               "Inputs per /v1/embeddings request when the quality suite encodes a dataset "
               "(default: the client's, 64).", metavar="N"),
    OptionSpec("encode-concurrency", "encode_concurrency", _count, None,
               "Encode requests in flight to each server (default: the client's, 4).",
               metavar="N"),
    OptionSpec("instructions", "instructions", on_off, True,
               "on: format texts with the profile's instruction templates and each task's "
               "description; off: send texts bare.", metavar="{on,off}"),
    OptionSpec("bootstrap-resamples", "bootstrap_resamples", _resamples, 1000,
               "Resamples for the 95 percent bootstrap confidence intervals (seed 0).",
               metavar="N"),
    OptionSpec("baseline", "baseline", Path, None,
               "Reports dir of the accepted run (quality.json, perf.json): at the end of the "
               "session compare this run with it, write compare.md/.html to --embedgate-reports-dir and "
               "fail the session when the candidate is worse (see `embedgate compare`).",
               metavar="DIR"),
    OptionSpec("compare-margin", "compare_margins", _args, (),
               "Non-inferiority margin for --embedgate-baseline, repeatable: 0.02 (all datasets, default "
               "0.01) or DATASET=0.03.", metavar="[DATASET=]M", repeatable=True),
    OptionSpec("compare-not-shown", "compare_not_shown", _not_shown, "fail",
               "For --embedgate-baseline: what a dataset whose paired CI is too wide to tell "
               "(neither non-inferior nor shown worse) does to the verdict: fail or pass.",
               metavar="{fail,pass}"),
    OptionSpec("record-only", "record_only", on_off, False,
               "Score datasets that have neither a bar nor a published anchor and record them "
               "without a verdict. Without it such a dataset is unjudged and fails the session. "
               "The bare flag means on.", metavar="{on,off}", const="on"),
    OptionSpec("cache-dir", "cache_dir", Path, Path(".embedgate_cache"),
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
    server_kind: str = "auto"
    sglang_launch: str = "serve"
    replicas: int = 1
    balancer: str = "nginx"
    data_parallel: int = 1
    tensor_parallel: int = 1
    startup_timeout: float = 300.0
    reports_dir: Path = Path("reports")
    cache_dir: Path = Path(".embedgate_cache")
    datasets: tuple[Any, ...] = ()
    ranking: str = "dense"
    encode_urls: tuple[str, ...] = ()
    encode_batch_size: int | None = None
    encode_concurrency: int | None = None
    instructions: bool = True
    bootstrap_resamples: int = 1000
    baseline: Path | None = None
    compare_margins: tuple[str, ...] = ()
    compare_not_shown: str = "fail"
    record_only: bool = False
    api_key: str | None = field(default=None, repr=False)
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.api_key,) if self.api_key else ()


def resolve(cli: dict[str, Any], env: dict[str, str], config: dict[str, Any],
            base: PathBase | Path) -> Settings:
    """Pick each option from the first source that sets it, then check how they combine.

    `base` is where relative paths are read from; a plain directory stands for all sources.
    """
    base = PathBase.of(base)
    values, sources = resolve_values(OPTIONS, cli, env, config)
    for key in ("reports_dir", "cache_dir", "baseline"):
        values[key] = base.resolve(values[key], sources[key])
    flag = {spec.dest: spec.flag for spec in OPTIONS}
    if values["server_url"] and values["backend"] == "auto":
        values["backend"] = "external"
        sources["backend"] = f"implied by {flag['server_url']} (from {sources['server_url']})"
    if values["backend"] == "external" and not values["server_url"]:
        raise SettingsError(f"{flag['backend']} external needs {flag['server_url']} "
                            f"(or EMBEDGATE_SERVER_URL)")
    if values["server_url"] and values["backend"] != "external":
        raise SettingsError(f"{flag['server_url']} is only for {flag['backend']} external, not "
                            f"{values['backend']!r} (from {sources['backend']})")
    for url in values["encode_urls"]:
        if url != "replicas" and not url.startswith(("http://", "https://")):
            raise SettingsError(f"{flag['encode_urls']} {url!r}: must be `replicas` or start "
                                f"with http:// or https://")
    if "replicas" in values["encode_urls"] and values["replicas"] == 1:
        raise SettingsError(f"{flag['encode_urls']} replicas needs {flag['replicas']} above 1")
    if values["replicas"] > 1 and values["backend"] == "external":
        raise SettingsError(f"{flag['replicas']} launches servers; an external server "
                            f"({flag['server_url']}) is already one URL")
    return Settings(**values, api_key=env.get(API_KEY_ENV) or None, sources=sources)
