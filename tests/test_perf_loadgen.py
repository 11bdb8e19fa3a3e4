"""The load generator (issue 5): per-request timings from a keep-alive HTTP/1.1 client whose
answers are checked, so a failing or short answer can never pass as a fast one."""

import socket

import pytest

from embedgate.perf.loadgen import (LoadError, LoadGenerator, count_embeddings, raise_on_errors,
                                    usage_tokens)
from embedgate.perf.overhead import pinned_thread, trivial_server
from raw_http import RawHTTP


@pytest.fixture(scope="module")
def echo_url():
    with trivial_server(echo_max_tokens=64) as url:
        yield url


class CannedHTTP(RawHTTP):
    """A one-answer HTTP server on a thread: reads each request, writes `raw` back."""

    def __init__(self, raw: bytes, close_after: bool = False):
        self.raw, self.close_after = raw, close_after
        super().__init__()

    def answer(self, conn):
        conn.sendall(self.raw)
        return not self.close_after


BODY = b'{"data":[{"index":0,"embedding":[1.0]}],"usage":{"prompt_tokens":7,"total_tokens":7}}'


def test_loadgen_times_every_request_and_sums_usage_tokens(echo_url):
    with LoadGenerator(echo_url, "m") as gen:
        requests = [gen.prepare(["one two", "three"]) for _ in range(50)]
        result = gen.run(requests, concurrency=4)
    raise_on_errors(result, "echo")
    assert result.n_requests == 50 and all(t > 0 for t in result.latencies_s)
    assert result.n_inputs == 100
    assert result.tokens == 50 * ((2 + 2) + (1 + 2))
    assert result.wall_s >= max(result.latencies_s)


def test_loadgen_concurrency_above_request_count_is_fine(echo_url):
    with LoadGenerator(echo_url, "m") as gen:
        result = gen.run([gen.prepare("x")] * 3, concurrency=64)
    assert result.n_errors == 0 and result.n_requests == 3


def test_loadgen_error_status_fails_loudly_with_the_body(echo_url):
    with LoadGenerator(echo_url, "m") as gen:
        result = gen.run([gen.prepare(" ".join(["w"] * 100))], concurrency=1)
    with pytest.raises(LoadError, match=r"(?s)1 of 1 requests failed.*HTTP 400.*more than 64"):
        raise_on_errors(result, "too long")
    assert result.tokens is None


def test_loadgen_short_answer_is_an_error():
    server = CannedHTTP(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
    try:
        with LoadGenerator(server.url, "m") as gen:
            result = gen.run([gen.prepare(["a", "b"])], concurrency=1)
    finally:
        server.close()
    assert result.errors == ["request 0: sent 2 inputs, got 1 embeddings back"]


def test_loadgen_reads_chunked_answers():
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (BODY[:10], BODY[10:]))
    server = CannedHTTP(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
                        + b"0\r\n\r\n")
    try:
        with LoadGenerator(server.url, "m") as gen:
            result = gen.run([gen.prepare("a")] * 5, concurrency=2)
    finally:
        server.close()
    assert result.n_errors == 0 and result.tokens == 35


def test_loadgen_reconnects_when_the_server_closes_each_connection():
    server = CannedHTTP(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                        % (len(BODY), BODY), close_after=True)
    try:
        with LoadGenerator(server.url, "m") as gen:
            result = gen.run([gen.prepare("a")] * 6, concurrency=2)
    finally:
        server.close()
    assert result.n_errors == 0 and result.n_requests == 6


def test_loadgen_refused_connection_is_reported_not_raised():
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with LoadGenerator(f"http://127.0.0.1:{port}", "m", timeout_s=5) as gen:
        result = gen._loop.run_until_complete(gen._run([gen.prepare("a")], 1, False))
    assert result.n_errors == 1 and "ConnectionRefusedError" in result.errors[0]


def test_loadgen_sends_the_bearer_key_and_json_body():
    gen = LoadGenerator("http://127.0.0.1:9", "served", api_key="sk-test")
    try:
        data = gen.prepare(["hi"]).data
    finally:
        gen.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Authorization: Bearer sk-test" in head
    assert b"Content-Length: %d" % len(body) in head
    assert body == b'{"model":"served","input":["hi"],"encoding_format":"float"}'


def test_usage_tokens_and_embedding_count_read_the_body_without_parsing_it():
    assert usage_tokens(BODY) == 7 and count_embeddings(BODY) == 1
    assert usage_tokens(b'{"data":[]}') is None


def test_pinned_thread_restores_the_affinity():
    import os
    before = os.sched_getaffinity(0)
    with pinned_thread(sorted(before)[0]):
        assert os.sched_getaffinity(0) == {sorted(before)[0]}
    assert os.sched_getaffinity(0) == before
