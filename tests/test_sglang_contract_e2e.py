"""The api suite meets SGLang 0.5.23's documented behaviour with no false alarm, and still
catches every fault.

SGLang needs a CUDA GPU, so the server here is NOT SGLang: it is the contract server of
embedgate.api.contract_server, which rewrites the answers of a real hf backend (the tiny Qwen3,
whose profile turns on every check) into what fixtures/backends/sglang.toml documents: SGLang's
flat error bodies, its `model` = --model-path, its refusal of an input of exactly the context
length and of blank texts, unknown model names served, ids outside the vocabulary unchecked. Told
`--embedgate-server-kind sglang`, the suite must fail exactly the checks of the table's documented
defects (each finding saying so) and nothing else, skip nothing, and, through each fault of the
catalogue in front of the contract server, still fail the checks that catch that fault.

Cost: one server start and 20 suite runs (1 whole, 1 of one file, 18 of the files of each
fault's checks): 9 min 33 s on the kit's 2-core machine with a load average of 12 from other
jobs, much less on a quiet one.
"""

from __future__ import annotations

import pytest

from embedgate.api.contract_server import ContractServer
from embedgate.api.proxy import FaultProxy
from embedgate.models.profiles import load_profile
from embedgate.serve.behaviours import load_behaviour
from test_api_suite_catches_faults import (CAUGHT_BY, ERRORS, FUZZ, LONG, PROFILE,  # noqa: F401
                                           base, needs_hf, run_suite, upstream)

SGLANG = load_behaviour("sglang")
KIND = ("--embedgate-server-kind", "sglang")
# The table's defects and the check that fails on each (the README's SGLang table says so too).
DEFECT_CHECKS = {
    "error_body": ERRORS + "test_error_bodies_follow_the_openai_shape",
    "unknown_model": ERRORS + "test_error_unknown_model_is_refused",
    "out_of_vocabulary_ids": FUZZ + "test_fuzz_token_ids_are_embedded_or_refused",
}


def test_every_documented_sglang_defect_names_the_check_that_fails_on_it():
    assert set(DEFECT_CHECKS) == {entry.key for entry in SGLANG.defects()}


@pytest.fixture(scope="module")
def contract(upstream):  # noqa: F811 - the module-scoped hf server imported above
    """The contract server (not SGLang) in front of the module's hf server."""
    from embedgate.models.reference import (ReferenceTokenizer, config_vocab_size,
                                            load_tokenizer)

    info, cache_dir = upstream
    profile = load_profile(PROFILE)
    tokenizer = ReferenceTokenizer(load_tokenizer(info.model), profile.max_tokens)
    with ContractServer(info.base_url, SGLANG, model_path=info.model,
                        max_tokens=profile.max_tokens, count_tokens=tokenizer.count,
                        vocab_size=config_vocab_size(info.model)) as server:
        yield server.url, cache_dir


def outcomes(run, kind: str) -> set[str]:
    return {base(name) for name, case in run["cases"].items() if case["outcome"] == kind}


@needs_hf
def test_api_suite_told_sglang_fails_only_its_documented_defects(contract, pytester,
                                                                 monkeypatch):
    url, cache_dir = contract
    run = run_suite(pytester, monkeypatch, url, cache_dir, *KIND)
    tail = "\n".join(run["result"].outlines[-40:])
    assert outcomes(run, "failed") == set(DEFECT_CHECKS.values()), tail
    assert not outcomes(run, "skipped") and len(run["cases"]) >= 30, tail
    for name, case in run["cases"].items():
        if case["outcome"] == "failed":  # a true alarm, and one that says it is documented
            assert all(k in case["message"] for k in ("sent:", "got:", "expected:")), name
            assert "a documented sglang 0.5.23:" in case["message"], case["message"][-1500:]


@needs_hf
def test_api_suite_without_the_sglang_table_would_raise_false_alarms(contract, pytester,
                                                                     monkeypatch):
    """The table is what keeps SGLang's documented, spec-allowed refusal of an input of exactly
    the context length from failing: judged by the spec table's expectations it fails."""
    url, cache_dir = contract
    run = run_suite(pytester, monkeypatch, url, cache_dir, "--embedgate-server-kind", "openai",
                    files=("test_contract_long_context.py",))
    assert LONG + "test_long_context_at_limit_matches_reference" in outcomes(run, "failed")


@pytest.mark.long
@needs_hf
@pytest.mark.parametrize("fault", sorted(CAUGHT_BY))
def test_api_suite_told_sglang_still_catches_fault(contract, pytester, monkeypatch, fault):
    """Each fault in front of the contract server: its checks still fail. (accept_any_model
    and fastapi_errors meet checks that SGLang's documented defects fail already.)"""
    url, cache_dir = contract
    files = tuple(sorted({check.split("::")[0] for check in CAUGHT_BY[fault]}))
    with FaultProxy(url, fault) as proxy:
        run = run_suite(pytester, monkeypatch, proxy.url, cache_dir, *KIND, files=files)
        applied = proxy.state.applied
    tail = "\n".join(run["result"].outlines[-40:])
    assert applied > 0, f"the fault {fault!r} never fired\n{tail}"
    missed = CAUGHT_BY[fault] - outcomes(run, "failed")
    assert not missed, f"fault {fault!r}: {sorted(missed)} did not fail\n{tail}"
