"""embedgate.api.contract_server: a server that answers as SGLang 0.5.23 documents (it is not
SGLang), rule by rule from fixtures/backends/sglang.toml.

The stdlib fake of tests/test_faults.py is the upstream, so every rewrite can be checked
exactly; tests/test_sglang_contract_e2e.py runs the api suite through it in front of a real
server.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from embedgate.api.contract_server import ContractServer, main
from embedgate.serve.behaviours import load_behaviour
from test_faults import NAME, TEXTS, Upstream, upstream_url  # noqa: F401 - the fake upstream

SGLANG = load_behaviour("sglang")
LIMIT = 8


def words(text: str) -> int:
    """The fake tokenizer: one token per word plus two specials."""
    return len(text.split()) + 2


@pytest.fixture
def contract(upstream_url):  # noqa: F811 - the fixture imported above
    with ContractServer(upstream_url, SGLANG, model_path="/models/fake", max_tokens=LIMIT,
                        count_tokens=words, vocab_size=100) as server:
        yield server


def post(server, body):
    return httpx.post(server.url + "/v1/embeddings", json=body, timeout=10)


def flat(status, message, err_type="BadRequestError"):
    return {"object": "error", "message": message, "type": err_type, "param": None,
            "code": status}


def test_contract_refusals_have_sglangs_flat_error_body(contract):
    """serving_base.py:205-221: the error fields at the top level, status 400."""
    answer = post(contract, {"input": ["a"], "dimensions": 3})
    assert answer.status_code == 400 and answer.json() == flat(400, "bad request")


def test_contract_unknown_model_is_embedded_and_model_is_the_path(contract):
    """serving_embedding.py:303 answers --model-path; the route never checks `model`."""
    answer = post(contract, {"model": "no-such-model", "input": TEXTS})
    assert answer.status_code == 200 and answer.json()["model"] == "/models/fake"
    assert Upstream.seen[-1]["body"]["model"] == NAME


@pytest.mark.parametrize("inp,message", [
    ("", "Input cannot be empty or whitespace only"),
    (" \t", "Input cannot be empty or whitespace only"),
    (["a", "\u3000"], "Input at index 1 cannot be empty or whitespace only"),
    ([1, -2], "Token ID at index 1 must be non-negative"),
])
def test_contract_blank_texts_and_negative_ids_are_refused(contract, inp, message):
    """serving_embedding.py:52-82."""
    assert post(contract, {"input": inp}).json() == flat(400, message)


def test_contract_input_of_the_context_length_is_refused(contract):
    """tokenizer_manager.py:1333-1351 refuses n >= context length: the longest input is one less."""
    at_limit = " ".join(["w"] * (LIMIT - 2))  # LIMIT tokens with the two specials
    assert post(contract, {"input": [at_limit]}).json() == flat(
        400, f"The input ({LIMIT} tokens) is longer than the model's context length "
             f"({LIMIT} tokens).")
    assert post(contract, {"input": [at_limit[2:]]}).status_code == 200
    assert post(contract, {"input": [list(range(LIMIT))]}).status_code == 400


@pytest.mark.parametrize("ids", [[5, 100], [[1], [2, 100]], [[1], [-1]]])
def test_contract_ids_outside_the_vocabulary_get_the_stand_in_500(contract, ids):
    """SGLang does not check them (vocab_parallel_embedding.py:515-520); the contract server
    answers 500, which is its stand-in, not SGLang's answer."""
    answer = post(contract, {"input": ids})
    assert answer.status_code == 500 and answer.json()["type"] == "InternalServerError"
    assert "stand-in" in answer.json()["message"]


def test_contract_bogus_encoding_format_is_refused_with_sglangs_words(contract):
    assert post(contract, {"input": "a", "encoding_format": "float16"}).json() == flat(
        400, "encoding_format must be either 'float' or 'base64', got 'float16'")


def test_contract_passes_readiness_and_successes_through(contract, upstream_url):  # noqa: F811
    assert httpx.get(contract.url + "/health").status_code == 200
    assert httpx.get(contract.url + "/v1/models").json()["data"][0]["id"] == NAME
    direct = httpx.post(upstream_url + "/v1/embeddings", json={"input": TEXTS}).json()
    through = post(contract, {"input": TEXTS}).json()
    assert through["data"] == direct["data"] and through["usage"] == direct["usage"]


def test_contract_for_a_table_without_deviations_changes_nothing(upstream_url):  # noqa: F811
    with ContractServer(upstream_url, load_behaviour("hf"), model_path="/m",
                        max_tokens=LIMIT) as server:
        refused = post(server, {"model": "nope", "input": TEXTS})
        accepted = post(server, {"input": [""]})
    assert refused.status_code == 404 and "error" in refused.json()
    assert accepted.status_code == 200 and accepted.json()["model"] == NAME


def test_contract_server_cli_rejects_an_unknown_kind(capsys):
    with pytest.raises(SystemExit):
        main(["--upstream", "http://127.0.0.1:9", "--kind", "nope", "--model-path", "m",
              "--max-tokens", "8"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_contract_server_cli_serves_and_says_it_is_not_sglang(upstream_url):  # noqa: F811
    proc = subprocess.Popen([sys.executable, "-m", "embedgate.api.contract_server", "--upstream",
                             upstream_url, "--kind", "sglang", "--model-path", "/models/fake",
                             "--max-tokens", "8"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("contract server (sglang as documented, not sglang) http://")
        url = line.split()[7]
        answer = httpx.post(url + "/v1/embeddings", json={"input": [" "]}, timeout=10)
        assert answer.json() == flat(400, "Input at index 0 cannot be empty or whitespace only")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
