"""Dataset entries become tasks without code; bad entries say what is wrong. The quality runner
scores tasks through any embed function and keeps what quality.json needs."""

from pathlib import Path

import numpy as np
import pytest

from embedgate.models.profiles import load_profile
from embedgate.quality.scoring import CachingEncoder, evaluate_task
from embedgate.quality.tasks import TaskError, all_tasks, builtin_tasks, parse_entry

ROOT = Path(__file__).resolve().parents[1]


def test_tasks_builtin_fixtures_all_exist():
    tasks = builtin_tasks()
    assert {"sts_en", "atec_zh", "xnli_multilingual", "xnli_crosslingual", "code_search",
            "crosslingual_retrieval"} <= {t.name for t in tasks}
    for task in tasks:
        assert task.path.exists(), task.path


def test_tasks_entry_from_command_line_string(tmp_path):
    spec = parse_entry("name=atec task=sts path=data/atec.tsv columns=s1,s2,label "
                       "threshold=0.2 'instruction=Find the same question.'", tmp_path)
    assert spec.path == tmp_path / "data" / "atec.tsv"
    assert dict(spec.columns) == {"sentence1": "s1", "sentence2": "s2", "score": "label"}
    assert spec.threshold == 0.2 and spec.instruction == "Find the same question."
    assert spec.main_metric == "spearman" and not spec.builtin


def test_tasks_entry_from_config_table(tmp_path):
    spec = parse_entry({"name": "xnli_de", "task": "pair_classification", "path": "/d/x.tsv",
                        "format": "xnli", "filter": {"language": "de"},
                        "label_map": {"yes": 1, "no": 0, "maybe": "drop"}}, tmp_path)
    assert spec.path == Path("/d/x.tsv") and spec.filter == {"language": "de"}
    assert spec.label_map == {"yes": 1.0, "no": 0.0, "maybe": None}
    assert spec.main_metric == "max_ap"


@pytest.mark.parametrize("entry, message", [
    ("name=a task=sts", "needs path="),
    ("name=a task=ranking path=x", "task='ranking'; use one of sts, pair_classification"),
    ("name=a task=retrieval path=x format=tsv", "does not fit task retrieval"),
    ("name=a task=sts path=x colour=red", "unknown key(s) ['colour']"),
    ("name=a task=sts path=x threshold=high", "threshold='high' is not a number"),
    ("just-a-path.tsv", "key=value"),
])
def test_tasks_bad_entry_says_what_is_wrong(entry, message, tmp_path):
    with pytest.raises(TaskError) as err:
        parse_entry(entry, tmp_path)
    assert message in str(err.value)


def test_tasks_user_entry_replaces_builtin_of_same_name(tmp_path):
    tasks = all_tasks(("name=sts_en task=sts path=mine.tsv",), tmp_path)
    mine = [t for t in tasks if t.name == "sts_en"]
    assert len(mine) == 1 and not mine[0].builtin


class HashEmbed:
    """A deterministic stand-in for a server: bag of hashed character trigrams."""

    def __init__(self, noise: float = 0.0):
        self.noise = noise
        self.calls = 0

    def __call__(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for row, text in enumerate(texts):
            for i in range(max(1, len(text) - 2)):
                out[row, hash(text[i:i + 3]) % 256] += 1
        if self.noise:
            out += np.random.default_rng(0).normal(0, self.noise, out.shape).astype(np.float32)
        return out


@pytest.mark.parametrize("name", ["sts_en", "xnli_multilingual", "xnli_crosslingual",
                                  "code_search"])
def test_quality_runner_scores_each_kind(name):
    spec = next(t for t in builtin_tasks() if t.name == name)
    encoder = CachingEncoder(HashEmbed())
    result = evaluate_task(spec, encoder, load_profile("all-minilm-l6-v2"), n_resamples=200)
    doc = result.as_json()
    assert doc["score"] == result.metrics[spec.main_metric]
    assert doc["ci"]["low"] <= doc["score"] <= doc["ci"]["high"]
    assert len(doc["items"]["ids"]) == result.n and len(doc["dataset"]["sha256"]) == 64
    if spec.kind == "retrieval":
        assert doc["baseline_bm25"]["ndcg_at_10"] > 0.2  # lexical overlap is real in the set
        assert len(doc["items"]["top10"][0]) == 10
    else:
        assert len(doc["items"]["similarity"]) == result.n


def test_quality_runner_encodes_each_text_once():
    embed = HashEmbed()
    encoder = CachingEncoder(embed, chunk=10_000)
    spec = next(t for t in builtin_tasks() if t.name == "sts_en")
    profile = load_profile("all-minilm-l6-v2")
    evaluate_task(spec, encoder, profile, n_resamples=100)
    calls = embed.calls
    evaluate_task(spec, encoder, profile, n_resamples=100)
    assert embed.calls == calls


def test_quality_runner_noise_lowers_score_and_fails_threshold():
    spec = next(t for t in builtin_tasks() if t.name == "sts_en")
    profile = load_profile("all-minilm-l6-v2")
    clean = evaluate_task(spec, CachingEncoder(HashEmbed()), profile, n_resamples=100)
    noisy = evaluate_task(spec, CachingEncoder(HashEmbed(noise=50.0)), profile, n_resamples=100)
    assert noisy.score < clean.score - 0.1
    assert noisy.passed is False
    message = noisy.failure_message(profile.name)
    for part in ("sts_en: spearman", "95% CI", "n=180", "below the threshold",
                 "profile [thresholds] sts_en", "sha256", "random-encoder null p99 0.1805",
                 "permutation null"):
        assert part in message


def test_quality_runner_instructions_follow_profile_and_switch():
    spec = next(t for t in builtin_tasks() if t.name == "code_search")
    seen: list[str] = []

    def embed(texts):
        seen.extend(texts)
        return HashEmbed()(texts)
    profile = load_profile("qwen3-embedding-0.6b")
    result = evaluate_task(spec, CachingEncoder(embed), profile, n_resamples=100)
    queries = [t for t in seen if t.startswith("Instruct: ")]
    assert 0 < len(queries) == result.n  # queries only; documents bare
    assert result.instruction.startswith("Instruct: Given a question about programming")
    seen.clear()
    evaluate_task(spec, CachingEncoder(embed), profile, instructions=False, n_resamples=100)
    assert not any(t.startswith("Instruct:") for t in seen)
