"""Backends: the exact command line and environment for each serving engine.

server.py launches, waits and tears down the same way for every backend; this module only
says *what* to launch. Everything model-specific comes from the profile.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from embedgate.gpu import cuda_visible
from embedgate.model_profiles import ModelProfile

LOOPBACK = "127.0.0.1"
VLLM_CPU_MEMORY_FRACTION = 0.1
# Engines put unix sockets (ZMQ ipc://) under TMPDIR, and a socket path is capped at 107 bytes;
# vLLM adds ~45 characters of its own, so a deeper TMPDIR makes it fail at startup.
MAX_TMPDIR_LEN = 55


def server_tmpdir(cache_dir: Path) -> Path:
    """<cache>/tmp when short enough for socket paths, else a short dir named after the cache."""
    preferred = cache_dir / "tmp"
    if len(str(preferred)) <= MAX_TMPDIR_LEN:
        return preferred
    digest = hashlib.sha256(str(cache_dir).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"embedgate-{digest}"


def looks_like_path(model: str) -> bool:
    """A hub id is `org/name`; anything rooted, relative or existing is a local path."""
    return model.startswith(("/", "./", "../", "~")) or Path(model).expanduser().exists()


@dataclass(frozen=True)
class LaunchSpec:
    """What to serve and where: the inputs every backend's command line is built from."""

    model: str
    profile: ModelProfile
    port: int
    cache_dir: Path
    extra_args: tuple[str, ...] = ()
    api_key: str | None = None
    cuda: bool = False
    python: str = sys.executable

    @property
    def local_model(self) -> bool:
        """Local paths run with the hub off, so a missing path fails fast instead of fetching."""
        return looks_like_path(self.model)


def _dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


class Backend:
    """Base: caches, temp dirs and HF offline mode inside the kit cache, never in $HOME."""

    name = "base"
    health_path = "/health"

    def command(self, spec: LaunchSpec) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def env(self, spec: LaunchSpec) -> dict[str, str]:
        cache = spec.cache_dir
        env = {
            "HF_HOME": str(cache / "hf"),
            "XDG_CACHE_HOME": str(cache / "xdg"),
            "TMPDIR": str(server_tmpdir(cache)),
            "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
            "TRITON_CACHE_DIR": str(cache / "triton"),
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
        if spec.local_model:
            env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        return env

    def cache_dirs(self, spec: LaunchSpec) -> list[Path]:
        return [Path(v) for k, v in self.env(spec).items() if k.endswith(("_HOME", "_DIR", "_ROOT"))
                or k == "TMPDIR"]

    def version(self) -> str | None:
        return None

    def matryoshka_overrides(self, profile: ModelProfile) -> str | None:
        if not profile.matryoshka_dims:
            return None
        return json.dumps({"is_matryoshka": True,
                           "matryoshka_dimensions": list(profile.matryoshka_dims)},
                          separators=(",", ":"))


class SGLangBackend(Backend):
    """SGLang `--is-embedding`: the production GPU path."""

    name = "sglang"

    def command(self, spec: LaunchSpec) -> list[str]:
        p = spec.profile
        cmd = [spec.python, "-m", "sglang.launch_server",
               "--model-path", spec.model,
               "--is-embedding",
               "--host", LOOPBACK,
               "--port", str(spec.port),
               "--served-model-name", p.served_name,
               "--context-length", str(p.max_tokens),
               "--dtype", p.dtype,
               "--mem-fraction-static", str(p.server.get("sglang_mem_fraction_static", 0.8)),
               "--random-seed", "0"]
        overrides = self.matryoshka_overrides(p)
        if overrides:
            cmd += ["--json-model-override-args", overrides]
        if spec.api_key:
            cmd += ["--api-key", spec.api_key]
        return cmd + list(p.server.get("extra_args", [])) + list(spec.extra_args)

    def version(self) -> str | None:
        return _dist_version("sglang")


class VLLMBackend(Backend):
    """vLLM's OpenAI server with the pooling runner (vllm on GPU, vllm-cpu on CPU)."""

    name = "vllm"

    def command(self, spec: LaunchSpec) -> list[str]:
        p = spec.profile
        # On CPU fp16/bf16 is slower and not exact; the profile's dtype is for GPUs.
        dtype = p.dtype if spec.cuda else "float32"
        cmd = [spec.python, "-m", "vllm.entrypoints.openai.api_server",
               "--model", spec.model,
               "--runner", "pooling",
               "--host", LOOPBACK,
               "--port", str(spec.port),
               "--served-model-name", p.served_name,
               "--max-model-len", str(p.max_tokens),
               "--dtype", dtype,
               "--seed", "0"]
        if not spec.cuda:
            # On CPU this flag is the share of the NUMA node's RAM vLLM reserves up front (0.92 by
            # default); an embedding model needs little, and CI machines have other work running.
            cmd += ["--gpu-memory-utilization", str(VLLM_CPU_MEMORY_FRACTION)]
        overrides = self.matryoshka_overrides(p)
        if overrides:
            cmd += ["--hf-overrides", overrides]
        return cmd + list(p.server.get("extra_args", [])) + list(spec.extra_args)

    def env(self, spec: LaunchSpec) -> dict[str, str]:
        env = super().env(spec)
        env.update(VLLM_HOST_IP=LOOPBACK, VLLM_CACHE_ROOT=str(spec.cache_dir / "vllm"),
                   VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
        if spec.api_key:  # vLLM reads the key from its env, so it never shows in a command line
            env["VLLM_API_KEY"] = spec.api_key
        bind = small_machine_cpu_bind()
        if not spec.cuda and bind and "VLLM_CPU_OMP_THREADS_BIND" not in env:
            # vLLM CPU's automatic binding keeps one core in reserve; on a machine of 2-4 cores
            # that idles a large share of it (the kit measured 0.70 vs 0.93 of in-process
            # sentence-transformers' encode rate on 2 cores). Set the variable to override.
            env["VLLM_CPU_OMP_THREADS_BIND"] = bind
        return env

    def version(self) -> str | None:
        return _dist_version("vllm", "vllm-cpu")


class HFBackend(Backend):
    """embedgate.hf_server: sentence-transformers/transformers over the same HTTP API."""

    name = "hf"

    def command(self, spec: LaunchSpec) -> list[str]:
        p = spec.profile
        cmd = [spec.python, "-m", "embedgate.hf_server",
               "--model", spec.model,
               "--served-model-name", p.served_name,
               "--host", LOOPBACK,
               "--port", str(spec.port),
               "--pooling", p.pooling,
               "--max-tokens", str(p.max_tokens),
               "--dtype", p.dtype if spec.cuda else "float32",
               "--device", "cuda" if spec.cuda else "cpu"]
        if not p.normalize:
            cmd.append("--no-normalize")
        if p.matryoshka_dims:
            cmd += ["--matryoshka-dims", ",".join(map(str, p.matryoshka_dims))]
        return cmd + list(spec.extra_args)

    def env(self, spec: LaunchSpec) -> dict[str, str]:
        env = super().env(spec)
        if spec.api_key:
            env["EMBEDGATE_API_KEY"] = spec.api_key
        return env

    def version(self) -> str | None:
        from embedgate import __version__
        st = _dist_version("sentence-transformers")
        return f"embedgate.hf_server {__version__}" + (f" ({st})" if st else "")


BACKENDS: dict[str, type[Backend]] = {"sglang": SGLangBackend, "vllm": VLLMBackend, "hf": HFBackend}


def small_machine_cpu_bind(max_cpus: int = 4) -> str | None:
    """`first-last` of this process's CPUs when they are few and contiguous, else None."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None
    if not cpus or len(cpus) > max_cpus or cpus[-1] - cpus[0] != len(cpus) - 1:
        return None
    return f"{cpus[0]}-{cpus[-1]}"


def pick_backend(name: str, unsupported: tuple[str, ...] = ()) -> str:
    """Resolve `auto`: sglang needs a CUDA GPU; vllm (or vllm-cpu) next; hf always works.
    `unsupported` comes from the profile ([server] unsupported_backends): engines that have no
    implementation of the model's architecture."""
    if name != "auto":
        return name
    if "sglang" not in unsupported and importlib.util.find_spec("sglang") and cuda_visible():
        return "sglang"
    if "vllm" not in unsupported and importlib.util.find_spec("vllm"):
        return "vllm"
    return "hf"


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every secret in text; used on anything that may reach a log or a report."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
