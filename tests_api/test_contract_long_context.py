"""Inputs at the context limit embed in full; inputs over it are refused or visibly truncated.

Spec: issue 4 ("Long context"). Silent truncation is the failure: the client believes the whole
document is in the vector while the tail was thrown away. Visible truncation means
usage.prompt_tokens equals the limit; a refusal is a 4xx whose message names the limit. "At the
limit" is the longest input the backend documents it embeds (`api.longest_input`): max_tokens,
or max_tokens - 1 for SGLang, which refuses an input of exactly --context-length tokens, visibly
(fixtures/backends/sglang.toml, at_limit).
"""

import pytest

from embedgate.api.findings import miscount

pytestmark = pytest.mark.api


def test_long_context_at_limit_matches_reference(api, reference):
    """The longest accepted input: embedded, counted exactly, and the model's own vector."""
    longest = api.longest_input
    text = reference.tokenizer.text_with_tokens(longest)
    got, ex = api.embed([text])
    used = ex.body.get("usage", {}).get("prompt_tokens")
    assert used == longest, api.finding(
        f"usage of an input at the context limit was {miscount(used, longest)}",
        sent=ex.request, got=f"usage.prompt_tokens {used!r}",
        expected=f"{longest}: the text is exactly {longest} tokens for the model's tokenizer "
                 f"(max_tokens {api.profile.max_tokens}"
                 + (", of which the backend embeds one less" if api.refuses_at_limit else "")
                 + ")")
    api.assert_agree(got, reference.encode([text]), what="an input at the limit embeds wrongly",
                     sent=ex.request, labels=[f"{longest}-token text"],
                     want_name="the reference model's embedding of the whole text")


@pytest.mark.parametrize("over", [1, 64], ids=["limit_plus_1", "limit_plus_64"])
def test_long_context_over_limit_is_refused_or_visibly_truncated(api, reference_tokenizer, over):
    """Over the limit: a 4xx naming the limit, or a 200 whose prompt_tokens equals the limit."""
    limit = api.profile.max_tokens
    text = reference_tokenizer.text_with_tokens(limit + over)
    ex = api.post({"input": [text]})
    used = (ex.body or {}).get("usage", {}).get("prompt_tokens") if ex.status == 200 else None
    names_limit = str(limit) in ex.error_text()
    refused = ex.refused and names_limit
    truncated = ex.status == 200 and used == limit
    allowed = {"reject": refused, "truncate": truncated, "either": refused or truncated}
    expected = {
        "reject": f"a 4xx whose error message names the limit {limit}",
        "truncate": f"a 200 with usage.prompt_tokens == {limit} (visible truncation)",
        "either": f"a 4xx naming the limit {limit}, or a 200 with prompt_tokens == {limit}",
    }[api.over_limit]
    if ex.refused:
        what = ("was refused without naming the limit" if not names_limit
                else "was refused, but the profile expects visible truncation")
    elif ex.status == 200:
        what = ("was truncated visibly, but the backend is expected to refuse it"
                if used == limit else f"was accepted and its usage {miscount(used, limit + over)}"
                + (" (silent truncation)" if isinstance(used, int) and used < limit + over
                   else ""))
    else:
        what = ex.outcome()
    source = ("the profile" if api.profile.api_setting("over_limit")
              else f"the {api.behaviour.name} behaviour table")
    assert allowed[api.over_limit], api.finding(
        f"an input of {limit + over} tokens (limit {limit}) {what}",
        sent=ex.request, got=ex.answer(),
        expected=f"{expected} ([api] over_limit = {api.over_limit!r}, from {source})")
