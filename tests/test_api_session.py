"""embedgate.api.session and .findings (issue 4): what the api suite's findings say, and how it
reads answers.

Every finding names what was sent, what came back and what was expected, in that order; the
request summaries are short but faithful. A small httpx MockTransport stands in for the server
where ApiSession has to read an answer; the real suite runs against a real server.
"""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest

from embedgate.api.findings import describe_input, describe_payload, finding, miscount, short
from embedgate.api.session import (SENTENCES, ApiSession, Exchange, gaps, is_blank,
                                   mixed_length_texts, refusal_shape_findings)
from embedgate.models.profiles import load_profile
from embedgate.serve.behaviours import load_behaviour

PROFILE = load_profile("tiny-qwen3")  # float32: tolerance 1e-5


def test_finding_is_three_aligned_lines_under_the_summary():
    assert finding("vectors differ", sent="POST x", got="HTTP 500", expected="HTTP 200") == (
        "vectors differ\n  sent:     POST x\n  got:      HTTP 500\n  expected: HTTP 200")


def test_short_quotes_strings_and_writes_the_rest_as_json():
    assert short("abc") == "'abc'"
    assert short("x" * 70) == repr("x" * 60 + "…")
    assert short([1, 2, 3]) == "[1, 2, 3]"
    assert short({"k": "é"}, 5) == '{"k":…'  # JSON keeps non-ASCII as it is


@pytest.mark.parametrize("inp,text", [
    ("hello", "'hello'"),
    ("y" * 61, repr("y" * 60 + "…") + " (61 chars)"),
    ([1, 2, 3], "3 token ids [1, 2, 3]"),
    (["hi"], "['hi']"),
    (["a", "bbb", "cc"], "3 texts of 1..3 chars ['a', 'bbb', …]"),
    (["a", "bb"], "2 texts of 1..2 chars ['a', 'bb']"),
    ([[1, 2], [3]], "2 token-id lists of 1..2 ids [[1, 2], [3]]"),
    ([], "[]"),
    (None, "null"),
    (["a", 7], '["a", 7]'),
])
def test_describe_input_summarises_each_kind_of_input(inp, text):
    assert describe_input(inp) == text


def test_describe_payload_keeps_every_field_in_order():
    payload = {"model": "m", "input": ["a", "bb"], "dimensions": 64}
    assert describe_payload(payload) == (
        "POST /v1/embeddings {model='m', input=2 texts of 1..2 chars ['a', 'bb'], dimensions=64}")


def test_gaps_separate_direction_from_length():
    want = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.6, 0.8]])
    got = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [-0.6, -0.8]])
    cos_gap, len_gap = gaps(got, want)
    np.testing.assert_allclose(cos_gap, [0.0, 1.0, 0.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(len_gap, [0.0, 0.0, 1.0, 0.0], atol=1e-12)


def test_gaps_of_a_zero_vector_are_finite():
    cos_gap, len_gap = gaps(np.zeros((1, 3)), np.array([[1.0, 0.0, 0.0]]))
    assert cos_gap.tolist() == [1.0] and len_gap.tolist() == [1.0]


def test_mixed_length_texts_are_fixed_and_bounded():
    texts = mixed_length_texts(64)
    assert texts == mixed_length_texts(64) and len(texts) == 32
    assert texts[0] == "The cat sat"  # every fourth text is the first 12 characters, stripped
    assert all(1 <= len(t) < 32 for t in texts)  # half of 64 tokens, counted as characters
    assert all(t in " ".join(SENTENCES * 2) for t in texts)  # runs of consecutive sentences


def exchange(body, status=200, **sent):
    return Exchange({"model": "m", **sent}, status, json.dumps(body), body, 0.0)


def test_exchange_answer_and_error_message():
    ok = exchange({"data": [{"index": 0, "embedding": [1.0, 0.0]}], "usage": {"total_tokens": 2}},
                  input="a")
    assert ok.answer() == "HTTP 200, 1 items, vector lengths [2], usage {'total_tokens': 2}"
    refused = exchange({"error": {"message": "unknown model"}}, 404, input="a")
    assert refused.answer() == 'HTTP 404: {"error": {"message": "unknown model"}}'
    assert refused.error_message() == "unknown model" and ok.error_message() is None
    assert repr(refused) == "<POST /v1/embeddings {model='m', input='a'} -> HTTP 404>"


def session(answer) -> tuple[ApiSession, list[dict]]:
    """An ApiSession whose server answers `answer(request body)` and remembers what it got."""
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=answer(seen[-1]))

    http = httpx.Client(base_url="http://server", transport=httpx.MockTransport(handler))
    return ApiSession(http, PROFILE, "served"), seen


def b64(values) -> str:
    return base64.b64encode(np.asarray(values, "<f4").tobytes()).decode()


@pytest.mark.parametrize("fmt,rows", [
    ("float", [[0.0, 1.0], [1.0, 0.0]]),
    ("base64", [b64([0.0, 1.0]), b64([1.0, 0.0])]),
])
def test_session_embed_orders_rows_by_index_and_adds_the_model(fmt, rows):
    api, seen = session(lambda body: {"data": [{"index": 1, "embedding": rows[0]},
                                               {"index": 0, "embedding": rows[1]}]})
    got, ex = api.embed(["a", "b"], encoding_format=fmt)
    assert seen == [{"model": "served", "input": ["a", "b"], "encoding_format": fmt}]
    assert got.tolist() == [[1.0, 0.0], [0.0, 1.0]] and ex.status == 200


@pytest.mark.parametrize("data,problem", [
    ([{"index": 0, "embedding": [1.0]}], "HTTP 200 with 1 items in `data`"),
    ([{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}],
     "HTTP 200 with indices [0, 0]"),
    ([{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 2.0]}],
     "embeddings of lengths [1, 2]"),
    ([{"index": 0, "embedding": [True]}, {"index": 1, "embedding": [1.0]}],
     "`embedding` is not a list of numbers: [true]"),
])
def test_session_vectors_name_why_an_answer_cannot_be_read(data, problem):
    api, _ = session(lambda body: {"data": data})
    with pytest.raises(AssertionError) as exc:
        api.embed(["a", "b"])
    assert str(exc.value) == finding(
        "the answer cannot be read as embeddings",
        sent="POST /v1/embeddings {model='served', input=2 texts of 1..1 chars ['a', 'b']}",
        got=problem, expected="HTTP 200 with 2 items indexed 0..1, each one vector of equal length")


def test_session_vectors_refuse_base64_that_is_not_whole_floats():
    six_bytes = base64.b64encode(b"\x00" * 6).decode()
    api, _ = session(lambda body: {"data": [{"index": 0, "embedding": six_bytes}]})
    with pytest.raises(AssertionError, match="base64 embedding of 6 bytes, not whole float32s"):
        api.embed("a", encoding_format="base64")


def test_session_assert_agree_lists_the_rows_that_differ():
    api, _ = session(lambda body: {})
    want = np.array([[1.0, 0.0], [0.0, 1.0]])
    api.assert_agree(want.copy(), want, what="w", sent="s", labels=["a", "b"], want_name="them")
    with pytest.raises(AssertionError) as exc:
        api.assert_agree(np.array([[1.0, 0.0], [0.0, 2.0]]), want, what="w", sent="s",
                         labels=["a", "b"], want_name="them")
    assert str(exc.value) == finding(
        "w", sent="s", got="1 of 2 differ from them: b: 1 - cosine 0, norm ratio off by 1",
        expected="each equal to them in direction and length: 1 - cosine <= 1e-05 "
                 "(profile 'tiny-qwen3', dtype float32)")


# -- refusals: whether a request was refused and what body it came with are judged apart ------
OPENAI_BODY = {"error": {"message": "bad input", "type": "BadRequestError", "code": 400}}
SGLANG_BODY = {"object": "error", "message": "Input cannot be empty", "type": "BadRequestError",
               "param": None, "code": 400}  # sglang/srt/entrypoints/openai/serving_base.py:205
FASTAPI_BODY = {"detail": [{"loc": ["body", "input"], "msg": "field required", "type": "missing"}]}


@pytest.mark.parametrize("body,shape,text", [
    (OPENAI_BODY, None, "bad input"),
    (SGLANG_BODY, 'the error fields at the top level ({"object", "message", "type", "param", '
                  '"code"})', "Input cannot be empty"),
    (FASTAPI_BODY, '{"detail": [...]} (FastAPI\'s default)', "field required"),
    ({"detail": "Not Found"}, '{"detail": <a string>} (FastAPI\'s default)', "Not Found"),
    ({"error": "Unauthorized"}, '{"error": "<a string>"}', "Unauthorized"),
    ({"error": {"message": "m"}}, '{"error": {...}} without type', "m"),
    (None, "not a JSON object", "null"),
])
def test_exchange_names_the_error_shape_and_still_reads_its_message(body, shape, text):
    ex = exchange(body, 422, input="a")
    assert ex.refused and ex.error_shape() == shape and ex.error_text() == text


@pytest.mark.parametrize("status,outcome", [(400, "was refused (HTTP 400)"),
                                            (200, "was accepted (HTTP 200)"),
                                            (503, "failed with a server error (HTTP 503)")])
def test_exchange_outcome_says_what_happened(status, outcome):
    ex = exchange({}, status, input="a")
    assert ex.outcome() == outcome and ex.refused == (status == 400)


def test_refusal_shape_findings_are_one_per_shape_listing_every_request():
    exchanges = [exchange(FASTAPI_BODY, 422, input=i) for i in ("a", "b", "c")]
    exchanges += [exchange(OPENAI_BODY, 400, input="ok"), exchange({}, 200, input="fine"),
                  exchange({"detail": "Not Found"}, 404, input="d")]
    found = refusal_shape_findings(exchanges, documented=" (documented)")
    assert len(found) == 2
    assert found[0].startswith('3 request(s) were refused with status 422 and a body that is not '
                               'the OpenAI error shape {"error": {"message", "type"}}: '
                               '{"detail": [...]} (FastAPI\'s default)\n  sent:     POST')
    assert "input='a'" in found[0] and "input='c'" in found[0] and "input='ok'" not in found[0]
    assert found[0].endswith('expected: the same refusals with a body {"error": {"message", '
                             '"type"}} (documented)')
    assert found[1].startswith("1 request(s) were refused with status 404")


def test_answer_gives_vector_lengths_not_base64_string_lengths():
    ex = exchange({"data": [{"index": 0, "embedding": b64([0.0, 1.0, 0.5])}]}, input="a",
                  encoding_format="base64")
    assert "vector lengths [3]" in ex.answer() and len(b64([0.0, 1.0, 0.5])) == 16


@pytest.mark.parametrize("got,want,text", [(513, 512, "over-counted by 1 (513 for 512)"),
                                           (500, 512, "under-counted by 12 (500 for 512)"),
                                           (None, 3, "not counted (prompt_tokens None)"),
                                           (3, 3, "counted exactly (3)")])
def test_miscount_says_which_way_a_count_is_wrong(got, want, text):
    assert miscount(got, want) == text


def test_session_takes_backend_behaviour_unless_the_profile_overrides_it():
    http = httpx.Client(base_url="http://server")
    sglang = ApiSession(http, PROFILE, "served", load_behaviour("sglang"))
    assert (sglang.longest_input, sglang.over_limit, sglang.token_ids) == (511, "reject", True)
    assert sglang.model_name_ok("/models/tiny") and not sglang.model_name_ok("")
    assert "a documented sglang 0.5.23: srt/" in sglang.documented("error_body")
    assert sglang.documented("usage") == ""
    strict = ApiSession(http, PROFILE, "served", load_behaviour("vllm"))
    assert strict.longest_input == 512 and not strict.model_name_ok("/models/tiny")
    assert ApiSession(http, PROFILE, "served").behaviour.name == "openai"


@pytest.mark.parametrize("text,blank", [("", True), (" \t\n", True), ("\u3000\xa0", True),
                                        ("\x1c", True), ("\u200b", False), ("a ", False)])
def test_is_blank_follows_pythons_whitespace_as_sglang_does(text, blank):
    assert is_blank(text) is blank
