"""Perf inputs (issue 5, Scenarios): distinct texts calibrated to ~16, ~128 and ~max tokens
against the server's own usage counts, with no tokenizer on the client."""

import zlib
from pathlib import Path

import pytest

from embedgate.perf.workload import (Calibrator, CalibrationError, MissingCorpusError, WordStream,
                                     default_stream, sentences_from_tsv, standard_lengths,
                                     synthetic_sentences)
from embedgate.plugin.perf import CORPUS

STS = Path(__file__).resolve().parents[1] / "fixtures" / "datasets" / "sts_en.tsv"


class FakeServer:
    """usage = 1.3 tokens per word + 2 special tokens; 400 above `limit` tokens."""

    def __init__(self, limit=256, usage=True, status=200):
        self.limit, self.usage, self.status, self.calls = limit, usage, status, 0

    def tokens(self, text):
        return int(len(text.split()) * 1.3) + 2

    def __call__(self, texts):
        self.calls += 1
        counts = [self.tokens(t) for t in texts]
        if self.status != 200:
            return self.status, None
        if max(counts) > self.limit:
            return 400, None
        return 200, sum(counts) if self.usage else None


@pytest.fixture
def stream():
    return WordStream(sentences_from_tsv(STS))


def test_stream_texts_are_distinct_and_deterministic(stream):
    texts = stream.texts(12, 5000)
    assert len(set(texts)) == 5000  # past one full cycle of starts too
    assert texts == stream.texts(12, 5000)
    assert all(len(t.split()) == 12 for t in texts)


def test_calibration_hits_each_target_from_below(stream):
    fake = FakeServer()
    lengths = standard_lengths(Calibrator(stream, fake), max_tokens=256)
    assert 14 <= lengths["short"].mean_tokens <= 16
    assert 125 <= lengths["medium"].mean_tokens <= 128
    assert 240 <= lengths["long"].mean_tokens <= 256 * 0.97
    assert all(v.tokens_measured for v in lengths.values())
    assert fake.calls < 60


def test_long_inputs_shrink_until_none_is_refused(stream):
    class Uneven(FakeServer):  # every tenth text is much longer in tokens
        def tokens(self, text):
            heavy = zlib.crc32(text.encode()) % 10 == 0
            return int(len(text.split()) * (1.6 if heavy else 1.0)) + 2
    fake = Uneven(limit=100)
    length = Calibrator(stream, fake).fit("long", 97, hard_limit=100)
    status, _ = fake(stream.texts(length.n_words, 32))
    assert status == 200


def test_server_without_usage_falls_back_to_a_stated_guess(stream):
    length = Calibrator(stream, FakeServer(usage=False)).fit("short", 16)
    assert not length.tokens_measured and length.mean_tokens is None and length.n_words == 12


def test_server_error_during_calibration_is_an_error(stream):
    with pytest.raises(CalibrationError, match="HTTP 500"):
        Calibrator(stream, FakeServer(status=500)).fit("short", 16)


def test_sentences_come_from_the_kit_sts_file_unique():
    sentences = sentences_from_tsv(STS)
    assert len(sentences) == len(set(sentences)) > 300


def test_bad_tsv_is_refused(tmp_path):
    (tmp_path / "x.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="columns"):
        sentences_from_tsv(tmp_path / "x.tsv")


def test_perf_corpus_is_the_kit_sts_file():
    # The workload texts are the shipped STS sentences, found through embedgate.resources.
    assert CORPUS.name == "sts_en.tsv"
    assert default_stream(CORPUS).words == WordStream(sentences_from_tsv(STS)).words


def test_missing_corpus_is_an_error_naming_the_path_and_where_it_ships(tmp_path):
    # Another text set would silently change every figure and baseline: never substitute one.
    missing = tmp_path / "sts_en.tsv"
    with pytest.raises(MissingCorpusError) as info:
        default_stream(missing)
    message = str(info.value)
    assert f"perf workload corpus not found: {missing}." in message
    assert "fixtures/datasets/sts_en.tsv in the checkout" in message
    assert "embedgate/fixtures/datasets/sts_en.tsv in the wheel" in message
    assert isinstance(info.value, FileNotFoundError)


def test_synthetic_sentences_are_deterministic_and_bounded():
    sentences = synthetic_sentences(50, seed=3)
    assert sentences == synthetic_sentences(50, seed=3) != synthetic_sentences(50, seed=4)
    assert all(6 <= len(s.split()) <= 14 and s.endswith(".") for s in sentences)
