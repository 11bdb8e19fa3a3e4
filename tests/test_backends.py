"""Backend command lines and environments: sglang flag by flag against SGLang 0.5.23's parser.

sglang cannot run without a GPU, so its exact command line is pinned here; the launch, health and
teardown code it goes through is the same that vllm and hf run in the lifecycle tests.
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from embedgate.serve import backends
from embedgate.serve.backends import (HFBackend, LaunchSpec, SGLangBackend, VLLMBackend, pick_backend,
                                redact)
from embedgate.serve.lifecycle import EmbeddingServer, ServerInfo, ServerStartError
from embedgate.serve.sglang_flags import (SERVE_ONLY_FLAGS, extract_flags, flags_file_version,
                                          known_flags, source_version)
from embedgate.models.profiles import available_profiles, load_profile

PY = "/usr/bin/python3"
CACHE = Path("/cache/embedgate")


def spec(profile="all-minilm-l6-v2", model="/models/m", **kw):
    kw.setdefault("cache_dir", CACHE)
    return LaunchSpec(model=model, profile=load_profile(profile), port=30001, python=PY, **kw)


def sglang_source_dir() -> Path | None:
    """SGLang's package directory when its source is on this machine: EMBEDGATE_SGLANG_SRC (an
    unzipped wheel's `sglang/`), else an installed sglang (found, not imported)."""
    if os.environ.get("EMBEDGATE_SGLANG_SRC"):
        return Path(os.environ["EMBEDGATE_SGLANG_SRC"])
    found = importlib.util.find_spec("sglang")
    return Path(found.origin).parent if found and found.origin else None


@pytest.fixture(scope="module")
def sglang_flags() -> frozenset[str]:
    """The flags SGLang's parser accepts: read from its source when present, else the list
    checked in from SGLang 0.5.23 (fixtures/backends/sglang-flags.txt)."""
    src = sglang_source_dir()
    return frozenset(extract_flags(src)) if src else known_flags()


QWEN_TAIL = [
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


def test_sglang_command_line_qwen3_0_6b_exact_in_both_launch_forms():
    """`sglang serve` (SGLang's recommended entry point; --model-type llm skips its diffusion
    probe of the hub) and `python -m sglang.launch_server` carry the same server flags."""
    kw = dict(model="Qwen/Qwen3-Embedding-0.6B", cuda=True)
    assert SGLangBackend().command(spec("qwen3-embedding-0.6b", **kw)) == [
        "/usr/bin/sglang", "serve", "--model-type", "llm",
        "--model-path", "Qwen/Qwen3-Embedding-0.6B", *QWEN_TAIL]
    assert SGLangBackend().command(spec("qwen3-embedding-0.6b", sglang_launch="launch_server",
                                        **kw)) == [
        PY, "-m", "sglang.launch_server", "--model-path", "Qwen/Qwen3-Embedding-0.6B", *QWEN_TAIL]
    with pytest.raises(ValueError, match="launch form 'sglang.launch' is not one of"):
        SGLangBackend().command(spec(sglang_launch="sglang.launch"))


def split_flags(args: list[str]) -> dict[str, object]:
    """--flag value pairs (and the one bare flag) of a command line, each flag once."""
    flags: dict[str, object] = {}
    i = 0
    while i < len(args):
        flag = args[i]
        assert flag.startswith("--"), f"stray value {flag!r} in {args}"
        assert flag not in flags, f"{flag} twice"
        if flag == "--is-embedding":
            flags[flag] = True
            i += 1
        else:
            flags[flag] = args[i + 1]
            i += 2
    return flags


@pytest.mark.parametrize("form", ["serve", "launch_server"])
@pytest.mark.parametrize("name", available_profiles())
def test_sglang_command_line_every_profile_uses_only_flags_sglang_accepts(name, form,
                                                                         sglang_flags):
    """Each flag is one SGLang 0.5.23's parser has (sglang/srt/arg_groups/fields/*.py and
    server_args.py); a flag it lacks would stop the server before it serves anything."""
    profile = load_profile(name)
    cmd = SGLangBackend().command(spec(name, cuda=True, sglang_launch=form,
                                       extra_args=("--tp-size", "2", "--dp-size", "1")))
    head = 2 if form == "serve" else 3  # [sglang, serve] or [python, -m, module]
    flags = split_flags(cmd[head:])
    allowed = sglang_flags | (SERVE_ONLY_FLAGS if form == "serve" else set())
    assert sorted(set(flags) - allowed) == []
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
        "--dp-size": "1",
    }
    if form == "serve":
        expected["--model-type"] = "llm"
    if profile.matryoshka_dims:
        expected["--json-model-override-args"] = json.dumps(
            {"is_matryoshka": True, "matryoshka_dimensions": list(profile.matryoshka_dims)},
            separators=(",", ":"))
    assert flags == expected
    assert profile.dtype in ("float32", "float16", "bfloat16")  # all in SGLang's --dtype choices
    assert cmd[-4:] == ["--tp-size", "2", "--dp-size", "1"]  # passthrough last: it can override


def test_sglang_flag_list_matches_the_source_it_was_derived_from():
    """The checked-in list is SGLang 0.5.23's; where that source is here, it must still agree."""
    assert flags_file_version() == "0.5.23"
    assert {"--model-path", "--is-embedding", "--api-key", "--config", "--tp-size"} <= known_flags()
    assert not {"--seed", "--max-model-len", "--gpu-memory-utilization"} & known_flags()  # vLLM's
    src = sglang_source_dir()
    if src is None:
        pytest.skip("no SGLang source here (set EMBEDGATE_SGLANG_SRC to an unzipped wheel's "
                    "sglang/ to compare)")
    if source_version(src) != flags_file_version():
        pytest.skip(f"the SGLang here is {source_version(src)}, the list is "
                    f"{flags_file_version()}'s")
    assert extract_flags(src) == known_flags()


def test_sglang_api_key_goes_in_a_private_config_file_not_on_argv(tmp_path):
    """SGLang reads no API key from its environment; `--config FILE.yaml` keeps it off argv,
    which any user can read in /proc."""
    s = spec(api_key="sk-abc", cache_dir=tmp_path)
    cmd = SGLangBackend().command(s)
    assert not any("sk-abc" in a for a in cmd) and "--api-key" not in cmd
    path = Path(cmd[cmd.index("--config") + 1])
    assert path.suffix == ".yaml" and path.parent == backends.server_tmpdir(tmp_path)
    assert SGLangBackend().secret_files(s) == {path: 'api_key: "sk-abc"\n'}
    assert "--config" not in SGLangBackend().command(spec(cache_dir=tmp_path))
    with pytest.raises(ValueError, match="SGLang takes one --config only"):
        SGLangBackend().command(spec(api_key="sk-abc", extra_args=("--config", "mine.yaml")))


def test_server_writes_secret_files_private_and_removes_them_and_the_key_from_the_log(tmp_path):
    """The key file is 0600 while the server runs and gone after; a log line holding the key
    (SGLang logs server_args with api_key) is redacted in the kept log."""
    secret = tmp_path / "tmp" / "key.yaml"
    script = ("import os, stat, sys; p = sys.argv[1]; "
              "print('mode', oct(stat.S_IMODE(os.stat(p).st_mode)), open(p).read().strip(), "
              "flush=True)")
    info = ServerInfo(backend="fake", base_url="http://127.0.0.1:9", served_name="m", model="m",
                      log_path=tmp_path / "server.log")
    server = EmbeddingServer(info, [sys.executable, "-c", script, str(secret)], {},
                             startup_timeout=5, api_key="sk-abc", poll_interval=0.05,
                             secret_files={secret: "api_key: sk-abc\n"})
    with pytest.raises(ServerStartError) as exc:
        server.start()
    assert "sk-abc" not in str(exc.value) and "mode 0o600 api_key: ***" in str(exc.value)
    assert not secret.exists()
    log = info.log_path.read_text()
    assert "mode 0o600" in log and "sk-abc" not in log


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
    assert cmd[:3] == [PY, "-m", "embedgate.serve.hf_server"]
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
    from embedgate.serve.backends import pick_backend
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


def test_backends_vllm_cpu_bind_keeps_the_users_own_value(monkeypatch):
    """A VLLM_CPU_OMP_THREADS_BIND in the user's environment reaches the server unchanged: the
    kit's env (laid over os.environ at launch) must not carry one of its own."""
    monkeypatch.setattr(backends.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    assert VLLMBackend().env(spec())["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "1")
    env = VLLMBackend().env(spec())
    assert "VLLM_CPU_OMP_THREADS_BIND" not in env
    assert {**backends.os.environ, **env}["VLLM_CPU_OMP_THREADS_BIND"] == "1"


@pytest.mark.parametrize("backend,cuda,dtype", [
    (VLLMBackend, False, "float32"), (VLLMBackend, True, "bfloat16"),
    (HFBackend, False, "float32"), (HFBackend, True, "bfloat16"),
    (SGLangBackend, True, "bfloat16")])
def test_backends_served_dtype_is_what_the_command_line_asks(backend, cuda, dtype):
    """The dtype recorded in ServerInfo (and so the api suite's tolerance) is the one the server
    is told to compute in, not the profile's wish."""
    s = spec("qwen3-embedding-0.6b", cuda=cuda)
    assert backend().served_dtype(s) == dtype
    cmd = backend().command(s)
    assert cmd[cmd.index("--dtype") + 1] == dtype


@pytest.mark.parametrize("dp,tp,expected", [
    (1, 1, []),
    (2, 1, ["--data-parallel-size", "2"]),
    (1, 4, ["--tensor-parallel-size", "4"]),
    (2, 4, ["--data-parallel-size", "2", "--tensor-parallel-size", "4"]),
])
def test_vllm_data_and_tensor_parallel_sizes_reach_its_command_line(dp, tp, expected):
    cmd = VLLMBackend().command(spec(data_parallel=dp, tensor_parallel=tp))
    flags = [a for a in cmd if a in ("--data-parallel-size", "--tensor-parallel-size")]
    assert flags == expected[::2]
    for flag, size in zip(expected[::2], expected[1::2]):
        assert cmd[cmd.index(flag) + 1] == size


@pytest.mark.parametrize("form", ["serve", "launch_server", "router"])
def test_sglang_dp_tp_sizes_are_flags_sglang_accepts_in_every_launch_form(form, sglang_flags):
    cmd = SGLangBackend().command(spec(cuda=True, sglang_launch=form, data_parallel=2,
                                       tensor_parallel=2))
    assert cmd[cmd.index("--dp-size") + 1] == "2" and cmd[cmd.index("--tp-size") + 1] == "2"
    assert {"--dp-size", "--tp-size"} <= sglang_flags
    if form == "router":  # SGLang's router in front of --dp-size workers, one command
        assert cmd[:3] == [PY, "-m", "sglang_router.launch_server"]
        assert cmd[3:5] == ["--model-path", "/models/m"]


def test_hf_backend_refuses_dp_tp_and_points_at_replicas():
    with pytest.raises(ValueError, match="--embedgate-replicas"):
        HFBackend().command(spec(data_parallel=2))


def test_cpu_replicas_each_bind_their_own_share_of_the_cores(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4})
    assert [backends.replica_cpu_bind(i, 2) for i in (1, 2)] == ["0-1", "2-4"]
    assert [backends.replica_cpu_bind(i, 5) for i in range(1, 6)] == ["0-0", "1-1", "2-2",
                                                                       "3-3", "4-4"]
    assert backends.replica_cpu_bind(1, 6) is None  # fewer cores than replicas: no binding
    monkeypatch.delenv(backends.CPU_BIND_ENV, raising=False)
    env = VLLMBackend().env(spec(cpu_bind="2-4"))
    assert env[backends.CPU_BIND_ENV] == "2-4"
