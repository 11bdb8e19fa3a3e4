"""Open-loop workloads (issue 13): texts or requests from a file (a quality dataset's TSV, the
user's JSONL, with timestamps for trace replay), batch-size mixes, and the same workload + seed
giving the same requests."""

import json

import numpy as np
import pytest

from embedgate.perf.traffic import (WorkloadError, from_file, parse_batch_mix, requests_digest,
                                    synthetic)


def test_batch_mix_is_normalised():
    assert parse_batch_mix("8") == ((8, 1.0),)
    assert parse_batch_mix("1:3, 8:1") == ((1, 0.75), (8, 0.25))
    with pytest.raises(WorkloadError, match="SIZE"):
        parse_batch_mix("1:x")


def test_tsv_column_texts_keep_their_order_and_cycle(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("sentence1\tsentence2\tlabel\na one\tx\t1\nb two\ty\t0\nc three\tz\t1\n")
    w = from_file(f"{path}#sentence1")
    assert w.inputs(4, attempt=0) == ["a one", "b two", "c three", "a one"]
    assert w.inputs(2, attempt=1) == ["c three", "a one"]
    assert w.as_dict()["workload_texts"] == 3 and len(w.as_dict()["workload_sha256"]) == 64


def test_tsv_without_the_column_names_the_columns(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("sentence1\tsentence2\na\tb\n")
    with pytest.raises(WorkloadError, match=r"no column 'text'.*sentence1"):
        from_file(path)


def test_jsonl_requests_with_timestamps_are_a_trace(tmp_path):
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (
        {"input": "a", "timestamp": 10_000}, {"input": ["b", "c"], "timestamp": 10_500},
        {"text": "d", "timestamp": 12_000})) + "\n")  # ms, as AIPerf's single_turn
    w = from_file(path)
    assert w.inputs(3, attempt=0) == ["a", ["b", "c"], "d"]
    assert w.timestamps.tolist() == [10.0, 10.5, 12.0]


def test_jsonl_timestamps_in_seconds(tmp_path):
    path = tmp_path / "trace.jsonl"
    path.write_text('{"input": "a", "timestamp_s": 1.5}\n{"texts": ["b"], "timestamp_s": 2}\n')
    w = from_file(path)
    assert w.timestamps.tolist() == [1.5, 2.0] and w.inputs(2, 0) == ["a", ["b"]]


def test_jsonl_bad_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"input": "a"}\n{"input": 3}\n')
    with pytest.raises(WorkloadError, match=r"bad.jsonl:2: expected"):
        from_file(path)


def test_jsonl_timestamps_on_some_lines_only_is_refused(tmp_path):
    path = tmp_path / "half.jsonl"
    path.write_text('{"input": "a", "timestamp": 1}\n{"input": "b"}\n')
    with pytest.raises(WorkloadError, match="1 of 2 lines have a timestamp"):
        from_file(path)


def test_missing_workload_file_says_what_is_expected(tmp_path):
    with pytest.raises(WorkloadError, match=r"not found \(a .jsonl of requests"):
        from_file(tmp_path / "nope.jsonl")


def test_batch_mix_draws_sizes_by_seed_and_attempt():
    texts = lambda count, attempt: [f"t{attempt}-{i}" for i in range(count)]
    w = synthetic(texts, n_words=3, batch_mix=parse_batch_mix("1:0.5,4:0.5"), seed=7)
    first, again, other = w.inputs(200, 0), w.inputs(200, 0), w.inputs(200, 1)
    assert first == again and first != other
    sizes = [1 if isinstance(x, str) else len(x) for x in first]
    assert set(sizes) == {1, 4} and 70 <= sizes.count(4) <= 130


def test_requests_digest_changes_with_any_byte():
    assert requests_digest([b"a", b"bc"]) == requests_digest([b"a", b"bc"])
    assert requests_digest([b"a", b"bc"]) != requests_digest([b"ab", b"c"])
