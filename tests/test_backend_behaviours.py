"""embedgate.serve.behaviours: the per-backend API behaviour tables (fixtures/backends/*.toml)
that the api suite reads, and the start-failure causes they name.

Each SGLang entry cites the file and line of SGLang 0.5.23 it was read from; the example GPU
workflow pins that version and deselects exactly the checks of its documented defects.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from embedgate.serve import behaviours
from embedgate.serve.behaviours import REQUIRED, BehaviourError, load_behaviour, table_names
from embedgate.serve.sglang_flags import flags_file_version

ROOT = Path(__file__).resolve().parents[1]
SGLANG_DEFECT_CHECKS = {  # tests/test_sglang_contract_e2e.py proves these fail, and only these
    "tests_api/test_contract_errors.py::test_error_bodies_follow_the_openai_shape",
    "tests_api/test_contract_errors.py::test_error_unknown_model_is_refused",
    "tests_api/test_fuzz.py::test_fuzz_token_ids_are_embedded_or_refused",
}


def test_behaviour_tables_ship_for_every_backend_and_the_spec():
    assert table_names() == ["hf", "openai", "sglang", "vllm"]


@pytest.mark.parametrize("name", ["hf", "openai", "sglang", "vllm"])
def test_behaviour_table_has_every_key_with_a_source(name):
    table = load_behaviour(name)
    assert set(table.entries) == set(REQUIRED)
    assert all(entry.source for entry in table.entries.values())


def test_sglang_table_pins_its_version_and_cites_file_and_line():
    table = load_behaviour("sglang")
    assert table.version == flags_file_version() == "0.5.23"
    for entry in table.entries.values():
        assert re.search(r"\.py:\d+", entry.source), f"{entry.key}: {entry.source}"
    assert {e.key for e in table.defects()} == {"error_body", "unknown_model",
                                                "out_of_vocabulary_ids"}
    assert (table.value("error_body"), table.value("at_limit"), table.value("response_model")) \
        == ("flat", "refused", "any")


def test_vllm_and_hf_tables_hold_the_suite_to_the_strict_contract():
    for name in ("vllm", "hf"):
        table = load_behaviour(name)
        assert not table.defects()
        assert (table.value("error_body"), table.value("at_limit"),
                table.value("response_model")) == ("openai", "embedded", "served_name")


@pytest.mark.parametrize("log,cause", [
    ("RuntimeError: Not enough memory. Please try to increase --mem-fraction-static. Current "
     "value: mem_fraction_static=0.3", "out of GPU memory for the KV cache"),
    ("ValueError: Model architectures ['MPNetForMaskedLM'] are not supported for now. Supported "
     "architectures: ...", "SGLang has no implementation of this model's architecture"),
    ("RuntimeError: Cannot find any model weights with `/models/m`", "missing model weights"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
     "out of GPU memory (torch)"),
    ("ModuleNotFoundError: No module named 'sglang'", "SGLang is not installed in the server's "
                                                     "Python"),
])
def test_sglang_start_failure_log_lines_name_their_cause(log, cause):
    lines = load_behaviour("sglang").explain("INFO starting\n" + log + "\n")
    assert len(lines) == 1 and lines[0].startswith(f"cause: {cause} (sglang 0.5.23: ")


def test_a_log_without_a_known_failure_names_no_cause():
    assert load_behaviour("sglang").explain("INFO all good\nKilled\n") == []


def test_a_server_start_failure_message_carries_the_cause(tmp_path):
    """The lifecycle puts the table's cause above the log tail when the server exits early."""
    import sys

    from embedgate.serve.lifecycle import EmbeddingServer, ServerInfo, ServerStartError

    script = "print('RuntimeError: Cannot find any model weights with `/m`'); raise SystemExit(1)"
    info = ServerInfo(backend="sglang", base_url="http://127.0.0.1:9", served_name="m",
                      model="/m", log_path=tmp_path / "server.log")
    server = EmbeddingServer(info, [sys.executable, "-c", script], {}, startup_timeout=5,
                             poll_interval=0.05, explain=load_behaviour("sglang").explain)
    with pytest.raises(ServerStartError) as exc:
        server.start()
    message = str(exc.value)
    assert "exited with code 1" in message
    assert message.index("cause: missing model weights") < message.index("--- last 50 log lines")


@pytest.mark.parametrize("edit,match", [
    (lambda t: t.replace('value = "flat"', 'value = "nested"'),
     r"\[behaviour.error_body\] value 'nested' is not one of"),
    (lambda t: t.replace('verdict = "defect"', 'verdict = "bug"', 1), "verdict 'bug' is not one of"),
    (lambda t: t.replace("[behaviour.usage]", "[behaviour.usages]"),
     r"missing \[behaviour\] keys \['usage'\], unknown \['usages'\]"),
    (lambda t: t.replace('pattern = "Not enough memory', 'pattern = "(Not enough memory', 1),
     "needs a valid pattern"),
])
def test_behaviour_table_mistakes_are_refused_with_file_and_key(tmp_path, monkeypatch, edit,
                                                               match):
    source = behaviours.backends_dir() / "sglang.toml"
    (tmp_path / "sglang.toml").write_text(edit(source.read_text()))
    monkeypatch.setattr(behaviours, "backends_dir", lambda: tmp_path)
    with pytest.raises(BehaviourError, match=match):
        load_behaviour("sglang")


def test_an_unknown_table_names_the_known_ones():
    with pytest.raises(BehaviourError, match="known: hf, openai, sglang, vllm"):
        load_behaviour("tgi")


def test_example_gpu_workflow_pins_sglang_and_deselects_only_its_documented_defects():
    text = (ROOT / "examples" / "ci" / "gpu-sglang-gate.yml").read_text()
    assert f'"sglang[all]=={flags_file_version()}"' in text
    assert set(re.findall(r"--deselect (\S+)", text)) == SGLANG_DEFECT_CHECKS
    for node in SGLANG_DEFECT_CHECKS:  # each still names a real test
        path, name = node.split("::")
        assert f"def {name}(" in (ROOT / path).read_text()
    assert "--embedgate-backend sglang" in text and "--backend sglang" not in text


def test_server_kind_picks_the_table_the_suite_judges_by(tmp_path):
    """auto: the launched backend's table, the spec's for an external server; else as named."""
    from embedgate.config.settings import SettingsError, resolve
    from embedgate.serve.launch import server_kind

    auto = resolve({}, {}, {}, tmp_path)
    assert [server_kind(auto, b) for b in ("sglang", "vllm", "hf", "external")] == [
        "sglang", "vllm", "hf", "openai"]
    named = resolve({"server_kind": "sglang", "server_url": "http://127.0.0.1:1"}, {}, {}, tmp_path)
    assert server_kind(named, "external") == "sglang"
    with pytest.raises(SettingsError, match=r"--embedgate-server-kind: 'tgi' \(from env "
                                            r"EMBEDGATE_SERVER_KIND\) must be one of"):
        resolve({}, {"EMBEDGATE_SERVER_KIND": "tgi"}, {}, tmp_path)
    with pytest.raises(SettingsError, match="--embedgate-sglang-launch: 'run'"):
        resolve({"sglang_launch": "run"}, {}, {}, tmp_path)
