"""Backend command lines and environments (issue #2, item 4: sglang argument by argument).

sglang cannot run without a GPU, so its exact command line is pinned here; the launch, health and
teardown code it goes through is the same that vllm and hf run in the lifecycle tests.
"""

import json
from pathlib import Path

import pytest

from embedgate import backends
from embedgate.backends import (HFBackend, LaunchSpec, SGLangBackend, VLLMBackend, pick_backend,
                                redact)
from embedgate.model_profiles import available_profiles, load_profile

PY = "/usr/bin/python3"
CACHE = Path("/cache/embedgate")


def spec(profile="all-minilm-l6-v2", model="/models/m", **kw):
    return LaunchSpec(model=model, profile=load_profile(profile), port=30001, cache_dir=CACHE,
                      python=PY, **kw)


def test_sglang_command_line_qwen3_0_6b_exact():
    cmd = SGLangBackend().command(spec("qwen3-embedding-0.6b", model="Qwen/Qwen3-Embedding-0.6B",
                                       cuda=True))
    assert cmd == [
        PY, "-m", "sglang.launch_server",
        "--model-path", "Qwen/Qwen3-Embedding-0.6B",
        "--is-embedding",
        "--host", "127.0.0.1",
        "--port", "30001",
        "--served-model-name", "Qwen3-Embedding-0.6B",
        "--context-length", "32768",
        "--dtype", "bfloat16",
        "--mem-fraction-static", "0.8",
        "--random-seed", "0",
        "--json-model-override-args",
        '{"is_matryoshka":true,"matryoshka_dimensions":[32,64,128,256,512,768,1024]}',
    ]


@pytest.mark.parametrize("name", available_profiles())
def test_sglang_command_line_every_profile_argument_by_argument(name):
    profile = load_profile(name)
    cmd = SGLangBackend().command(spec(name, cuda=True, extra_args=("--tp-size", "2")))
    assert cmd[:3] == [PY, "-m", "sglang.launch_server"]
    args = cmd[3:]
    flags = {}
    i = 0
    while i < len(args):  # every flag is known and appears once
        flag = args[i]
        assert flag.startswith("--"), f"stray value {flag!r} in {args}"
        if flag == "--is-embedding":
            flags[flag] = True
            i += 1
        else:
            assert flag not in flags, f"{flag} twice"
            flags[flag] = args[i + 1]
            i += 2
    expected = {
        "--model-path": "/models/m",
        "--is-embedding": True,
        "--host": "127.0.0.1",
        "--port": "30001",
        "--served-model-name": profile.served_name,
        "--context-length": str(profile.max_tokens),
        "--dtype": profile.dtype,
        "--mem-fraction-static": str(profile.server["sglang_mem_fraction_static"]),
        "--random-seed": "0",
        "--tp-size": "2",
    }
    if profile.matryoshka_dims:
        expected["--json-model-override-args"] = json.dumps(
            {"is_matryoshka": True, "matryoshka_dimensions": list(profile.matryoshka_dims)},
            separators=(",", ":"))
    assert flags == expected
    assert cmd[-2:] == ["--tp-size", "2"]  # passthrough comes last so it can override


def test_sglang_api_key_goes_on_the_command_line_and_is_redacted_for_logs():
    cmd = SGLangBackend().command(spec(api_key="sk-abc"))
    assert cmd[cmd.index("--api-key") + 1] == "sk-abc"
    assert "sk-abc" not in redact(" ".join(cmd), ("sk-abc",))


def test_vllm_command_line_minilm_on_cpu_exact():
    cmd = VLLMBackend().command(spec())
    assert cmd == [
        PY, "-m", "vllm.entrypoints.openai.api_server",
        "--model", "/models/m",
        "--runner", "pooling",
        "--host", "127.0.0.1",
        "--port", "30001",
        "--served-model-name", "all-MiniLM-L6-v2",
        "--max-model-len", "256",
        "--dtype", "float32",
        "--seed", "0",
        "--gpu-memory-utilization", str(backends.VLLM_CPU_MEMORY_FRACTION),
    ]


def test_vllm_command_line_matryoshka_and_gpu_dtype():
    cmd = VLLMBackend().command(spec("qwen3-embedding-4b", cuda=True))
    assert cmd[cmd.index("--dtype") + 1] == "bfloat16"
    assert "--gpu-memory-utilization" not in cmd  # on a GPU vLLM's own default holds
    overrides = json.loads(cmd[cmd.index("--hf-overrides") + 1])
    assert overrides == {"is_matryoshka": True,
                         "matryoshka_dimensions": [32, 64, 128, 256, 512, 768, 1024, 1536, 2048,
                                                   2560]}
    assert "--hf-overrides" not in VLLMBackend().command(spec("all-minilm-l6-v2"))


def test_vllm_env_keeps_caches_in_kit_dir_and_key_off_the_command_line():
    s = spec(api_key="sk-xyz")
    env = VLLMBackend().env(s)
    assert env["VLLM_HOST_IP"] == "127.0.0.1"
    for key in ("HF_HOME", "XDG_CACHE_HOME", "TMPDIR", "VLLM_CACHE_ROOT",
                "TORCHINDUCTOR_CACHE_DIR"):
        assert env[key].startswith(str(CACHE)), key
    assert env["VLLM_API_KEY"] == "sk-xyz"
    assert not any("sk-xyz" in a for a in VLLMBackend().command(s))


def test_env_offline_only_for_local_models(tmp_path):
    local = spec(model=str(tmp_path))
    missing = spec(model=str(tmp_path / "not-there"))  # a typo'd path must not go to the hub
    hub = spec(model="BAAI/bge-m3")
    assert VLLMBackend().env(local)["HF_HUB_OFFLINE"] == "1"
    assert VLLMBackend().env(missing)["HF_HUB_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE" not in VLLMBackend().env(hub)


def test_hf_command_line_carries_profile_pooling_and_dims():
    cmd = HFBackend().command(spec("tiny-qwen3"))
    assert cmd[:3] == [PY, "-m", "embedgate.hf_server"]
    pairs = dict(zip(cmd[3::2], cmd[4::2]))
    assert pairs["--pooling"] == "last"
    assert pairs["--max-tokens"] == "512"
    assert pairs["--matryoshka-dims"] == "16,32,64"
    assert pairs["--host"] == "127.0.0.1" and pairs["--device"] == "cpu"


def test_pick_backend_auto(monkeypatch):
    found = {"sglang": True, "vllm": True}
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda n: found.get(n))
    monkeypatch.setattr(backends, "cuda_visible", lambda: True)
    assert pick_backend("auto") == "sglang"
    monkeypatch.setattr(backends, "cuda_visible", lambda: False)
    assert pick_backend("auto") == "vllm"
    found["vllm"] = False
    assert pick_backend("auto") == "hf"
    assert pick_backend("sglang") == "sglang"  # an explicit choice is never second-guessed


def test_tmpdir_stays_short_enough_for_engine_socket_paths(tmp_path):
    deep = tmp_path / ("d" * 80) / ".embedgate_cache"
    env = VLLMBackend().env(LaunchSpec(model="m", profile=load_profile("all-minilm-l6-v2"),
                                       port=1, cache_dir=deep))
    assert len(env["TMPDIR"]) <= backends.MAX_TMPDIR_LEN
    assert backends.server_tmpdir(deep) == backends.server_tmpdir(deep)  # stable per cache
    assert backends.server_tmpdir(Path("/c")) == Path("/c/tmp")


def test_backends_auto_skips_engines_the_profile_marks_unsupported():
    """all-mpnet-base-v2: vLLM has no MPNet implementation, so auto must not pick it."""
    from embedgate.backends import pick_backend
    profile = load_profile("all-mpnet-base-v2")
    unsupported = tuple(profile.server["unsupported_backends"])
    assert pick_backend("auto", unsupported) in ("sglang", "hf")
    assert pick_backend("vllm", unsupported) == "vllm"  # an explicit choice is obeyed


def test_backends_vllm_cpu_binds_all_cores_of_a_small_machine(monkeypatch, tmp_path):
    """vLLM CPU's own binding reserves a core; on 2-4 cores the kit binds them all, unless the
    user set VLLM_CPU_OMP_THREADS_BIND."""
    monkeypatch.setattr(backends.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert backends.small_machine_cpu_bind() == "0-1"
    monkeypatch.setattr(backends.os, "sched_getaffinity", lambda pid: set(range(16)),
                        raising=False)
    assert backends.small_machine_cpu_bind() is None
    monkeypatch.setattr(backends.os, "sched_getaffinity", lambda pid: {0, 2}, raising=False)
    assert backends.small_machine_cpu_bind() is None
