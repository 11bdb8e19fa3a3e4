"""Bad requests get a 4xx with an OpenAI error body, never a 200 and never a 5xx.

Spec: OpenAI error object `{"error": {"message", "type", "code"}}`; issue 4 ("Unknown model name,
empty list, wrong types, a bogus encoding_format -> 4xx with an error body"). A 200 would hand
the client vectors for a request it did not mean; a 5xx says the server broke, not the client.
"""

import pytest

pytestmark = pytest.mark.api

# JSON booleans as token ids ([true, false]) and numeric strings as `dimensions` ("16") are left
# out on purpose: vLLM's pydantic models coerce them (to [1, 0] and 16), and the OpenAI spec does
# not say whether a server may; every case below is refused by vLLM, SGLang and the hf backend.
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


def assert_client_error(api, ex, *, why: str, must_mention: str | None = None) -> None:
    """4xx, a JSON body with error.message, and (when given) a word the message must name."""
    message = ex.error_message()
    ok = 400 <= ex.status < 500 and message is not None
    if ok and must_mention is not None:
        ok = must_mention.lower() in message.lower()
    expected = "a 4xx with a JSON body {\"error\": {\"message\": ...}}" + (
        f" whose message names {must_mention!r}" if must_mention else "")
    assert ok, api.finding(f"{why} was not refused properly", sent=ex.request, got=ex.answer(),
                           expected=expected)


def test_error_unknown_model_is_refused(api):
    """A typo in `model` must not silently get another model's vectors."""
    ex = api.post({"model": api.served_name + "-no-such-model", "input": "hello"})
    assert_client_error(api, ex, why="an unknown model name")


def test_error_empty_input_list_is_refused(api):
    """Nothing to embed is the client's mistake: a 4xx, not an empty 200."""
    ex = api.post({"input": []})
    assert_client_error(api, ex, why="an empty input list")


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_error_wrong_types_are_refused(api, case):
    """Values of the wrong JSON type must be refused, not coerced into something."""
    ex = api.post(dict(WRONG_TYPES[case]))
    assert_client_error(api, ex, why=f"a request with {case.replace('_', ' ')}")


def test_error_bogus_encoding_format_is_refused(api):
    """Only float and base64 are defined; anything else must not silently fall back."""
    ex = api.post({"input": "hello", "encoding_format": "float16"})
    assert_client_error(api, ex, why="encoding_format 'float16'")
