"""Turn resolved settings and a model profile into the server object the session fixture runs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from embedgate.serve.backends import BACKENDS, LOOPBACK, LaunchSpec, looks_like_path, \
    pick_backend, replica_cpu_bind, server_tmpdir
from embedgate.serve.fleet import Balancer, Fleet, balancer_launch, member_log
from embedgate.serve.behaviours import BackendBehaviour, load_behaviour
from embedgate.serve.gpu import cuda_visible, replica_gpus, visible_gpu_ids
from embedgate.models.profiles import ModelProfile
from embedgate.serve.lifecycle import EmbeddingServer, ExternalServer, ServerInfo, free_port
from embedgate.config.settings import Settings


def resolve_model(settings: Settings, profile: ModelProfile) -> str:
    """--embedgate-model, else the profile's packaged weights, else its hub id."""
    if settings.model:
        return str(Path(settings.model).expanduser()) if looks_like_path(settings.model) \
            else settings.model
    local = profile.local_model_path(settings.cache_dir)
    if local:
        return local
    if profile.hf_id:
        return profile.hf_id
    raise ValueError(f"profile {profile.name!r} names no weights: pass --embedgate-model PATH_OR_HF_ID")


def server_kind(settings: Settings, backend_name: str) -> str:
    """The behaviour table the server is judged by: the option, else the launched backend's,
    else (an external server) the OpenAI spec alone."""
    if settings.server_kind != "auto":
        return settings.server_kind
    return "openai" if backend_name == "external" else backend_name


def behaviour_for(settings: Settings, backend_name: str) -> BackendBehaviour:
    return load_behaviour(server_kind(settings, backend_name))


def build_server(settings: Settings,
                 profile: ModelProfile) -> EmbeddingServer | ExternalServer | Fleet:
    backend_name = pick_backend(settings.backend,
                                tuple(profile.server.get("unsupported_backends", ())))
    behaviour = behaviour_for(settings, backend_name)
    if backend_name == "external":
        served = settings.model or profile.served_name
        info = ServerInfo(backend="external", base_url=settings.server_url, served_name=served,
                          model=served)
        return ExternalServer(info, startup_timeout=settings.startup_timeout,
                              api_key=settings.api_key,
                              health_path=behaviour.value("health_path"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if settings.replicas == 1:
        return _launched(settings, profile, backend_name, behaviour, stamp)
    n = settings.replicas
    gpus = visible_gpu_ids() if backend_name == "sglang" or cuda_visible() else []
    per = settings.data_parallel * settings.tensor_parallel
    replicas = [_launched(settings, profile, backend_name, behaviour, stamp,
                          role=f"replica {i} of {n}", cpu_bind=replica_cpu_bind(i, n),
                          gpus=replica_gpus(i, n, per, gpus) if gpus else None)
                for i in range(1, n + 1)]
    first = replicas[0].info
    port = free_port()
    logs = settings.reports_dir / "logs"
    command, files = balancer_launch(settings.balancer, python=sys.executable, port=port,
                                     worker_urls=[r.info.base_url for r in replicas],
                                     workdir=server_tmpdir(settings.cache_dir) / f"lb-{port}")
    balancer = Balancer(
        ServerInfo(backend=settings.balancer, base_url=f"http://{LOOPBACK}:{port}",
                   served_name=first.served_name, model=first.model, role="balancer",
                   log_path=member_log(logs, settings.balancer, stamp, "balancer")),
        command, {}, startup_timeout=settings.startup_timeout, api_key=settings.api_key,
        secret_files=files)
    info = ServerInfo(backend=backend_name, base_url=balancer.info.base_url,
                      served_name=first.served_name, model=first.model, version=first.version,
                      served_dtype=first.served_dtype, log_path=balancer.info.log_path)
    return Fleet(info, replicas, balancer)


def _launched(settings: Settings, profile: ModelProfile, backend_name: str,
              behaviour: BackendBehaviour, stamp: str, role: str | None = None,
              cpu_bind: str | None = None, gpus: str | None = None) -> EmbeddingServer:
    """One server of `backend_name` on a free loopback port (a fleet's replica when `role`,
    on its own CPUs or GPUs)."""
    backend = BACKENDS[backend_name]()
    model = resolve_model(settings, profile)
    spec = LaunchSpec(model=model, profile=profile, port=free_port(),
                      cache_dir=settings.cache_dir, extra_args=settings.server_args,
                      api_key=settings.api_key,
                      cuda=backend_name == "sglang" or cuda_visible(),
                      sglang_launch=settings.sglang_launch,
                      data_parallel=settings.data_parallel,
                      tensor_parallel=settings.tensor_parallel, cpu_bind=cpu_bind)
    env = backend.env(spec)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    command = backend.command(spec)
    for path in backend.cache_dirs(spec):
        path.mkdir(parents=True, exist_ok=True)
    logs = settings.reports_dir / "logs"
    log_path = member_log(logs, backend_name, stamp, role) if role \
        else logs / f"server-{backend_name}-{stamp}.log"
    info = ServerInfo(backend=backend_name, base_url=f"http://{LOOPBACK}:{spec.port}",
                      served_name=profile.served_name, model=model, version=backend.version(),
                      served_dtype=backend.served_dtype(spec), log_path=log_path, role=role)
    return EmbeddingServer(info, command, env,
                           startup_timeout=settings.startup_timeout, api_key=settings.api_key,
                           health_path=behaviour.value("health_path"),
                           explain=behaviour.explain,
                           secret_files=backend.secret_files(spec))


def missing_path_hint(model: str) -> str:
    """A line for the failure message when the model was given as a path that isn't there."""
    if looks_like_path(model) and not Path(model).expanduser().exists():
        return f"\nnote: the model path {model} does not exist."
    return ""
