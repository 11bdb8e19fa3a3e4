"""Fixtures of the api suite: the server as a contract checker sees it, and the reference model.

`api` is an embedgate.api.session.ApiSession on the server under test: it wraps each exchange
so every finding says what was sent, what came back and what was expected, and it judges the
server by the profile and the backend's behaviour table (fixtures/backends/*.toml, chosen by
--embedgate-server-kind). `reference` is the in-process model the answers are compared with, and
skips (never passes) when its weights are not on this machine.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Iterator

import pytest

from embedgate.api import hypothesis_profiles
from embedgate.api.session import ApiSession, mixed_length_texts, open_session
from embedgate.models.reference import (ReferenceEncoder, ReferenceTokenizer, ReferenceUnavailable,
                                        load_tokenizer, resolve_model_dir)
from embedgate.serve.launch import behaviour_for

hypothesis_profiles.register()  # before hypothesis' own plugin reads --hypothesis-profile

REFERENCE_DEVICE_ENV = "EMBEDGATE_REFERENCE_DEVICE"
# Checks that send what some engines do not validate and may not survive (SGLang 0.5.23 passes
# token ids beyond the vocabulary to the embedding gather): run last, so a server they take
# down has already answered every other check.
RUN_LAST = ("test_fuzz_token_ids_are_embedded_or_refused",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: getattr(item, "originalname", item.name) in RUN_LAST)


def pytest_configure(config: pytest.Config) -> None:
    """Load the hypothesis profile: the option, else EMBEDGATE_HYPOTHESIS_PROFILE, else ci.

    Hypothesis has a built-in `ci` profile of its own; loading again here makes ours win.
    """
    option = config.getoption("--hypothesis-profile", default=None)
    try:
        from hypothesis import settings
        current = settings.get_current_profile_name()
        if option and current != option and current.startswith(option):
            hypothesis_profiles.register()  # a verbosity variant hypothesis built: keep it
            return
        hypothesis_profiles.activate(option)
    except ValueError as exc:
        raise pytest.UsageError(f"embedgate: {exc}") from None


@pytest.fixture(scope="session")
def api(embedding_server, embedgate_settings, model_profile) -> Iterator[ApiSession]:
    """A session-wide raw client: fuzz tests reuse it across examples."""
    with open_session(embedding_server.base_url, model_profile, embedding_server.served_name,
                      api_key=embedgate_settings.api_key,
                      behaviour=behaviour_for(embedgate_settings, embedding_server.backend),
                      served_dtype=embedding_server.served_dtype) as session:
        yield session


@pytest.fixture(scope="session")
def reference_model_dir(embedding_server, embedgate_settings, model_profile) -> str:
    for module in ("torch", "transformers", "sentence_transformers"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"no reference model: {module} is not installed "
                        f"(pip install 'embedgate[hf]')")
    try:
        return resolve_model_dir(model_profile, server_model=embedding_server.model,
                                 cli_model=embedgate_settings.model,
                                 cache_dir=embedgate_settings.cache_dir)
    except ReferenceUnavailable as exc:
        pytest.skip(f"no reference model: {exc}")


@pytest.fixture(scope="session")
def reference_tokenizer(reference_model_dir, model_profile) -> ReferenceTokenizer:
    """The model's own tokenizer (light: no weights), for token counts and exact-length texts."""
    return ReferenceTokenizer(load_tokenizer(reference_model_dir), model_profile.max_tokens)


@pytest.fixture(scope="session")
def reference(reference_model_dir, model_profile) -> ReferenceEncoder:
    """The model run in-process with the profile's pooling and normalisation: fp32 on CPU, or
    on the GPU named by EMBEDGATE_REFERENCE_DEVICE (e.g. cuda) for models too big for that."""
    device = os.environ.get(REFERENCE_DEVICE_ENV) or "cpu"
    if device != "cpu":
        import torch

        if not device.startswith("cuda") or not torch.cuda.is_available():
            pytest.fail(f"{REFERENCE_DEVICE_ENV}={device!r}: use cpu, or cuda[:N] where torch "
                        f"sees a GPU (it sees {torch.cuda.device_count()})", pytrace=False)
    return ReferenceEncoder(reference_model_dir, model_profile, device=device)


@pytest.fixture(scope="session")
def mixed_texts(model_profile) -> list[str]:
    """32 texts from one word to about half the context, in several scripts."""
    return mixed_length_texts(model_profile.max_tokens)
