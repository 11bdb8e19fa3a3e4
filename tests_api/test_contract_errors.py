"""Bad requests get a 4xx, never a 200 and never a 5xx; every refusal has the OpenAI error body.

Spec: OpenAI error object `{"error": {"message", "type", "param", "code"}}`; issue 4 ("Unknown
model name, empty list, wrong types, a bogus encoding_format -> 4xx with an error body"). A 200
would hand the client vectors for a request it did not mean; a 5xx says the server broke, not the
client. Whether a request was refused and what body the refusals carry are two root causes, so
they are two kinds of check: the `test_error_*_is_refused` checks judge the status alone, and
`test_error_bodies_follow_the_openai_shape` judges every body at once, with one finding per
wrong shape listing the requests behind it.
"""

import pytest

from embedgate.api.session import refusal_shape_findings

pytestmark = pytest.mark.api

# JSON booleans as token ids ([true, false]) and numeric strings as `dimensions` ("16") are left
# out on purpose: vLLM's pydantic models coerce them (to [1, 0] and 16), and the OpenAI spec does
# not say whether a server may. Every case below is refused by vLLM and the hf backend, and by
# SGLang 0.5.23's request model (fixtures/backends/sglang.toml, wrong_types) except perhaps [[]],
# which its validator does not look at.
WRONG_TYPES = {
    "input_missing": {},
    "input_null": {"input": None},
    "input_number": {"input": 42},
    "input_object": {"input": {"text": "hello"}},
    "input_mixed_list": {"input": ["hello", 7]},
    "input_nested_mixed": {"input": [[1, 2], ["a"]]},
    "input_float_ids": {"input": [1.5, 2.5]},
    "input_empty_id_list": {"input": [[]]},
    "encoding_format_number": {"input": "hello", "encoding_format": 1},
    "dimensions_fraction": {"input": "hello", "dimensions": 1.5},
    "dimensions_list": {"input": "hello", "dimensions": [16]},
}


def assert_refused(api, ex, *, why: str) -> None:
    """A 4xx; the headline says what happened instead (accepted, or a server error)."""
    assert ex.refused, api.finding(f"{why} {ex.outcome()}", sent=ex.request, got=ex.answer(),
                                   expected="a 4xx refusal (its body is judged by "
                                            "test_error_bodies_follow_the_openai_shape)")


def test_error_unknown_model_is_refused(api):
    """A typo in `model` must not silently get another model's vectors."""
    ex = api.post({"model": api.served_name + "-no-such-model", "input": "hello"})
    assert ex.refused, api.finding(
        f"an unknown model name {ex.outcome()}", sent=ex.request, got=ex.answer(),
        expected="a 4xx refusal: the server serves only " + repr(api.served_name)
                 + api.documented("unknown_model"))


def test_error_empty_input_list_is_refused(api):
    """Nothing to embed is the client's mistake: a 4xx, not an empty 200."""
    assert_refused(api, api.post({"input": []}), why="an empty input list")


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_error_wrong_types_are_refused(api, case):
    """Values of the wrong JSON type must be refused, not coerced into something."""
    assert_refused(api, api.post(dict(WRONG_TYPES[case])),
                   why=f"a request with {case.replace('_', ' ')}")


def test_error_bogus_encoding_format_is_refused(api):
    """Only float and base64 are defined; anything else must not silently fall back."""
    assert_refused(api, api.post({"input": "hello", "encoding_format": "float16"}),
                   why="encoding_format 'float16'")


def refusal_catalogue(api) -> list[dict]:
    """One request of every kind the contract refuses (out-of-vocabulary ids are left to the
    fuzz test: on some engines they are not checked and can take the server down)."""
    over_limit = " ".join(["hello"] * (2 * api.profile.max_tokens + 8))
    return [{"model": api.served_name + "-no-such-model", "input": "hello"}, {"input": []},
            *(dict(WRONG_TYPES[case]) for case in sorted(WRONG_TYPES)),
            {"input": "hello", "encoding_format": "float16"},
            {"input": ["hello"], "dimensions": 0}, {"input": [over_limit]}]


def test_error_bodies_follow_the_openai_shape(api):
    """Every refusal says why in the OpenAI error object, so clients can show the message.
    A body of another shape is one root cause however many requests show it."""
    exchanges = [api.post(body) for body in refusal_catalogue(api)]
    if not any(ex.refused for ex in exchanges):
        pytest.skip("the server refused none of the catalogue's requests: the "
                    "test_error_*_is_refused checks report that; no body to judge")
    problems = refusal_shape_findings(exchanges, documented=api.documented("error_body"))
    assert not problems, "\n".join(problems)
