"""The served vectors are the model's: parity with the in-process reference, text by text.

Spec: issue 4 ("Parity"): the server's vectors vs sentence-transformers / transformers run here
with the profile's pooling, instruction and normalisation, on a fixed multilingual set with long
inputs: cosine >= 1 - tolerance. Self-consistent but wrong answers (a wrong pooling, a dropped
EOS, a bad kernel) fail only here.
"""

import pytest

from embedgate.models.reference import formatted

pytestmark = pytest.mark.api

TASK = "Given a web search query, retrieve relevant passages that answer the query"
DOCUMENTS = [
    "The cat sat on the mat.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "La banque est fermée le dimanche, mais le distributeur fonctionne.",
    "El río atraviesa la ciudad de norte a sur.",
    "银行在河边开了一家新的分行。",
    "東京は日本の首都であり、世界最大の都市圏の一つです。",
    "서울은 한국의 수도입니다.",
    "Москва — столица России.",
    "القاهرة هي عاصمة مصر.",
    "ירושלים היא עיר עתיקה.",
    "दिल्ली भारत की राजधानी है।",
    "Hà Nội là thủ đô của Việt Nam.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "😀 Party time 🎉 with friends",
    "a",
]
QUERIES = ["where is the capital of russia", "how do I compute fibonacci numbers", "河边的银行"]


def test_parity_with_reference_on_multilingual_set(api, reference):
    """Short texts in a dozen scripts, queries with the profile's instruction, and long texts."""
    limit = api.profile.max_tokens
    long_texts = [reference.tokenizer.text_with_tokens(n) for n in (limit // 2, limit - 1)]
    texts = (formatted(api.profile, DOCUMENTS + long_texts)
             + formatted(api.profile, QUERIES, kind="query", task=TASK))
    names = ([f"doc {d[:20]!r}" for d in DOCUMENTS]
             + [f"long text ({limit // 2} tokens)", f"long text ({limit - 1} tokens)"]
             + [f"query {q[:20]!r}" for q in QUERIES])
    served, ex = api.embed(texts)
    api.assert_agree(served, reference.encode(texts),
                     what="the served vectors differ from the reference model", sent=ex.request,
                     labels=names, want_name=f"the reference ({reference.model_dir}, fp32, "
                                             f"pooling {api.profile.pooling})")
