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

from embedgate.serve.gpu import cuda_visible
from embedgate.models.profiles import ModelProfile

LOOPBACK = "127.0.0.1"
VLLM_CPU_MEMORY_FRACTION = 0.1
CPU_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
# fp16/bf16 on CPU is slow and not exact: these backends run float32 there, whatever the
# profile's dtype (which is for GPUs).
FLOAT32_ON_CPU = ("vllm", "hf")
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
    sglang_launch: str = "serve"  # or "launch_server", "router" (embedgate.config.settings)
    data_parallel: int = 1
    tensor_parallel: int = 1
    cpu_bind: str | None = None  # this server's CPUs ("0-3"), one share of a CPU fleet

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
    # The engine's own flags for (data-parallel, tensor-parallel) sizes; None: it has none.
    parallel_flags: tuple[str, str] | None = None

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

    def secret_files(self, spec: LaunchSpec) -> dict[Path, str]:
        """Files (path -> text) written with mode 0600 before launch and removed at stop."""
        return {}
    def served_dtype(self, spec: LaunchSpec) -> str:
        """The dtype the server computes in (it sets the api suite's tolerance)."""
        cpu_float32 = self.name in FLOAT32_ON_CPU and not spec.cuda
        return "float32" if cpu_float32 else spec.profile.dtype

    def program(self, spec: LaunchSpec, module: str, model_flag: str) -> list[str]:
        """``python -m MODULE --model-flag MODEL``: how each server here is started."""
        return [spec.python, "-m", module, model_flag, spec.model]

    def listen_args(self, spec: LaunchSpec) -> list[str]:
        """Loopback address, port and served name: the same three flags in every server here."""
        return ["--host", LOOPBACK, "--port", str(spec.port),
                "--served-model-name", spec.profile.served_name]

    def parallel_args(self, spec: LaunchSpec) -> list[str]:
        """Data- and tensor-parallel sizes above 1, in the engine's own flags."""
        sizes = (spec.data_parallel, spec.tensor_parallel)
        if sizes == (1, 1):
            return []
        if self.parallel_flags is None:
            raise ValueError(f"the {self.name} backend has no data or tensor parallelism: use "
                             f"--embedgate-replicas N for N copies behind a balancer")
        return [arg for flag, size in zip(self.parallel_flags, sizes) if size > 1
                for arg in (flag, str(size))]

    def matryoshka_overrides(self, profile: ModelProfile) -> str | None:
        if not profile.matryoshka_dims:
            return None
        return json.dumps({"is_matryoshka": True,
                           "matryoshka_dimensions": list(profile.matryoshka_dims)},
                          separators=(",", ":"))


class SGLangBackend(Backend):
    """SGLang `--is-embedding`: the production GPU path.

    Every flag here exists in the parser of SGLang 0.5.23, the version the kit targets
    (tests/test_backends.py checks each one against embedgate.serve.sglang_flags). Two launch
    forms: ``sglang serve`` (SGLang's recommended entry point; ``--model-type llm`` skips its
    diffusion-model probe, which asks the hub for model_index.json, sglang/cli/serve.py:30-59 and
    sglang/cli/utils.py:91-133) and ``python -m sglang.launch_server`` (still supported, with a
    deprecation warning, sglang/launch_server.py:67-74). SGLang reads no API key from its
    environment (sglang/srt/environ.py has none), so the key goes in a 0600 YAML file passed
    with ``--config`` (sglang/srt/server_args.py:682-689, utils/server_args_config_parser.py),
    never on argv.
    """

    name = "sglang"
    LAUNCH_FORMS = ("serve", "launch_server", "router")
    parallel_flags = ("--dp-size", "--tp-size")

    def program(self, spec: LaunchSpec, module: str, model_flag: str) -> list[str]:
        if spec.sglang_launch == "serve":
            return [sglang_script(spec.python), "serve", "--model-type", "llm",
                    model_flag, spec.model]
        if spec.sglang_launch == "launch_server":
            return super().program(spec, module, model_flag)
        if spec.sglang_launch == "router":  # the server's flags, --dp-size workers, one router
            return super().program(spec, "sglang_router.launch_server", model_flag)
        raise ValueError(f"sglang launch form {spec.sglang_launch!r} is not one of "
                         f"{', '.join(self.LAUNCH_FORMS)}")

    def command(self, spec: LaunchSpec) -> list[str]:
        p = spec.profile
        cmd = [*self.program(spec, "sglang.launch_server", "--model-path"),
               "--is-embedding",
               *self.listen_args(spec),
               "--context-length", str(p.max_tokens),
               "--dtype", p.dtype,
               "--mem-fraction-static", str(p.server.get("sglang_mem_fraction_static", 0.8)),
               "--random-seed", "0",
               *self.parallel_args(spec)]
        overrides = self.matryoshka_overrides(p)
        if overrides:
            cmd += ["--json-model-override-args", overrides]
        extra = [*p.server.get("extra_args", []), *spec.extra_args]
        if spec.api_key:
            if any(a == "--config" or a.startswith("--config=") for a in extra):
                raise ValueError("the kit passes the API key to SGLang in a --config file, and "
                                 "SGLang takes one --config only: move your --config options "
                                 "to --embedgate-server-arg flags")
            cmd += ["--config", str(self.api_key_file(spec))]
        return cmd + extra

    def api_key_file(self, spec: LaunchSpec) -> Path:
        """SGLang wants a .yaml/.yml suffix (server_args_config_parser.py:155-162)."""
        return server_tmpdir(spec.cache_dir) / f"sglang-api-key-{spec.port}.yaml"

    def secret_files(self, spec: LaunchSpec) -> dict[Path, str]:
        if not spec.api_key:
            return {}
        return {self.api_key_file(spec): f"api_key: {json.dumps(spec.api_key)}\n"}

    def version(self) -> str | None:
        return _dist_version("sglang")


def sglang_script(python: str) -> str:
    """The `sglang` console script of the environment `python` belongs to."""
    return str(Path(python).with_name("sglang"))


class VLLMBackend(Backend):
    """vLLM's OpenAI server with the pooling runner (vllm on GPU, vllm-cpu on CPU)."""

    name = "vllm"
    parallel_flags = ("--data-parallel-size", "--tensor-parallel-size")

    def command(self, spec: LaunchSpec) -> list[str]:
        p = spec.profile
        cmd = [*self.program(spec, "vllm.entrypoints.openai.api_server", "--model"),
               "--runner", "pooling",
               *self.listen_args(spec),
               "--max-model-len", str(p.max_tokens),
               "--dtype", self.served_dtype(spec),
               "--seed", "0",
               *self.parallel_args(spec)]
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
        bind = spec.cpu_bind or small_machine_cpu_bind()
        if not spec.cuda and bind and CPU_BIND_ENV not in os.environ:
            # vLLM CPU's automatic binding keeps one core in reserve; on a machine of 2-4 cores
            # that idles a large share of it (the kit measured 0.70 vs 0.93 of in-process
            # sentence-transformers' encode rate on 2 cores). The user's own value is kept: the
            # server's environment is os.environ overlaid with this dict.
            env[CPU_BIND_ENV] = bind
        return env

    def version(self) -> str | None:
        return _dist_version("vllm", "vllm-cpu")


class HFBackend(Backend):
    """embedgate.serve.hf_server: sentence-transformers/transformers over the same HTTP API."""

    name = "hf"

    def command(self, spec: LaunchSpec) -> list[str]:
        p = spec.profile
        cmd = [*self.program(spec, "embedgate.serve.hf_server", "--model"),
               *self.listen_args(spec),
               "--pooling", p.pooling,
               "--max-tokens", str(p.max_tokens),
               "--dtype", self.served_dtype(spec),
               "--device", "cuda" if spec.cuda else "cpu",
               *self.parallel_args(spec)]
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
        return f"embedgate.serve.hf_server {__version__}" + (f" ({st})" if st else "")


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


def replica_cpu_bind(replica: int, replicas: int) -> str | None:
    """`first-last` of replica `replica` (1-based)'s share of this process's CPUs, split into
    `replicas` contiguous groups; None when there are fewer CPUs than replicas or they are not
    contiguous. CPU replicas that all bound every core would each run one OpenMP thread per
    core and take turns on every one of them."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None
    if len(cpus) < replicas or cpus[-1] - cpus[0] != len(cpus) - 1:
        return None
    size = len(cpus) // replicas
    first = cpus[0] + (replica - 1) * size
    last = cpus[-1] if replica == replicas else first + size - 1
    return f"{first}-{last}"


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
