"""Turn resolved settings and a model profile into the server object the session fixture runs."""

from __future__ import annotations

import time
from pathlib import Path

from embedgate.backends import BACKENDS, LaunchSpec, looks_like_path, pick_backend
from embedgate.gpu import cuda_visible
from embedgate.model_profiles import ModelProfile
from embedgate.server import EmbeddingServer, ExternalServer, ServerInfo, free_port
from embedgate.settings import Settings


def resolve_model(settings: Settings, profile: ModelProfile) -> str:
    """--model, else the profile's packaged weights, else its hub id."""
    if settings.model:
        return str(Path(settings.model).expanduser()) if looks_like_path(settings.model) \
            else settings.model
    local = profile.local_model_path(settings.cache_dir)
    if local:
        return local
    if profile.hf_id:
        return profile.hf_id
    raise ValueError(f"profile {profile.name!r} names no weights: pass --model PATH_OR_HF_ID")


def build_server(settings: Settings, profile: ModelProfile) -> EmbeddingServer | ExternalServer:
    backend_name = pick_backend(settings.backend,
                                tuple(profile.server.get("unsupported_backends", ())))
    if backend_name == "external":
        served = settings.model or profile.served_name
        info = ServerInfo(backend="external", base_url=settings.server_url, served_name=served,
                          model=served)
        return ExternalServer(info, startup_timeout=settings.startup_timeout,
                              api_key=settings.api_key)
    backend = BACKENDS[backend_name]()
    model = resolve_model(settings, profile)
    spec = LaunchSpec(model=model, profile=profile, port=free_port(),
                      cache_dir=settings.cache_dir, extra_args=settings.server_args,
                      api_key=settings.api_key,
                      cuda=backend_name == "sglang" or cuda_visible())
    env = backend.env(spec)
    for path in backend.cache_dirs(spec):
        path.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    info = ServerInfo(backend=backend_name, base_url=f"http://127.0.0.1:{spec.port}",
                      served_name=profile.served_name, model=model, version=backend.version(),
                      log_path=settings.reports_dir / "logs" / f"server-{backend_name}-{stamp}.log")
    return EmbeddingServer(info, backend.command(spec), env,
                           startup_timeout=settings.startup_timeout, api_key=settings.api_key)


def missing_path_hint(model: str) -> str:
    """A line for the failure message when the model was given as a path that isn't there."""
    if looks_like_path(model) and not Path(model).expanduser().exists():
        return f"\nnote: the model path {model} does not exist."
    return ""
