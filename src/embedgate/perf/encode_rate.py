"""The kit's end-to-end encode rate against sentence-transformers in process (issue 3).

Both encode the same sentences with the same model weights in one benchmark run, alternating
(reference, kit, reference, kit, ...) so both see the same machine state; the server under test is
paused while the reference runs (see `paused`). The kit side is
``EmbeddingClient.embed`` with its default batch size and concurrency, over HTTP to the server
under test; pytest-benchmark times it. Its per-request timings come from a timing transport
wrapped around httpx's own, so the scenario has real request percentiles too.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import time
from typing import Any, Callable, Iterator, Sequence

import httpx
import numpy as np
import psutil

from embedgate.serve.client import DEFAULT_CONCURRENCY, EmbeddingClient
from embedgate.perf.stats import latency_figures, median, round_figures, spread_pct

Encode = Callable[[Sequence[str]], np.ndarray]


class _TimedStream(httpx.SyncByteStream):
    """Records when the last byte of a body has been read (httpx reads bodies after the
    transport returns, so timing handle_request alone would stop at the headers)."""

    def __init__(self, inner: httpx.SyncByteStream, t0: float, sink: list[float]):
        self._inner, self._t0, self._sink = inner, t0, sink

    def __iter__(self) -> Iterator[bytes]:
        yield from self._inner
        self._sink.append(time.perf_counter() - self._t0)

    def close(self) -> None:
        self._inner.close()


class TimingTransport(httpx.BaseTransport):
    """Wraps a transport and keeps each request's latency, request sent to body read."""

    def __init__(self, inner: httpx.BaseTransport):
        self.inner = inner
        self.latencies_s: list[float] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        t0 = time.perf_counter()
        response = self.inner.handle_request(request)
        response.stream = _TimedStream(response.stream, t0, self.latencies_s)
        return response

    def close(self) -> None:
        self.inner.close()


def timed_kit_client(base_url: str, model: str, *, api_key: str | None,
                     **client_args: Any) -> tuple[EmbeddingClient, TimingTransport]:
    """An EmbeddingClient with its defaults (or `client_args`, as a quality run passes them),
    whose requests are timed."""
    concurrency = client_args.get("concurrency", DEFAULT_CONCURRENCY)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport = TimingTransport(httpx.HTTPTransport(limits=limits))
    return EmbeddingClient(base_url, model, api_key=api_key, transport=transport,
                           **client_args), transport


def reference_encoder(model_path: str, *, max_tokens: int, normalize: bool,
                      batch_size: int = 32) -> tuple[Encode, dict[str, Any]]:
    """sentence-transformers in this process on CPU, with its default batch size (32)."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu")
    model.max_seq_length = max_tokens

    def encode(texts: Sequence[str]) -> np.ndarray:
        return model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                            normalize_embeddings=normalize, show_progress_bar=False)

    return encode, {"reference": "sentence-transformers in process", "reference_device": "cpu",
                    "reference_batch_size": batch_size,
                    "reference_torch_threads": torch.get_num_threads()}


@contextlib.contextmanager
def paused(pids: Sequence[int]) -> Iterator[None]:
    """SIGSTOP the server's processes for the reference encode, SIGCONT them after, always.

    An idle vLLM CPU worker still polls (15-60% of a core here), and two OpenMP pools on two cores
    slow each other down by up to 6x: measured with the server running, the reference fell from
    ~400 to 51-380 sentences/s and the ratio became meaningless. Paused, the reference gets the
    machine to itself, as it would in a user's own process.

    A stopped process ignores the parent-death SIGTERM, so a watchdog shell resumes the server if
    this process dies (even by SIGKILL) mid-pause: its stdin closes and it sends SIGCONT.
    """
    if not pids:
        yield
        return
    watchdog = subprocess.Popen(["sh", "-c", 'read _; kill -CONT "$@" 2>/dev/null', "sh",
                                 *map(str, pids)], stdin=subprocess.PIPE)
    stopped = []
    try:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            except ProcessLookupError:
                continue
        _wait_stopped(stopped)
        yield
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                continue
        watchdog.stdin.close()
        watchdog.wait()


def _wait_stopped(pids: Sequence[int], timeout_s: float = 2.0) -> None:
    """SIGSTOP is delivered asynchronously; wait until every process is really stopped."""
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                if psutil.Process(pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE):
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.002)


class ForeignCPU:
    """CPU that processes other than this one used since creation, in % of one core (the server
    is paused meanwhile, so this is load from outside the comparison)."""

    def __init__(self):
        self._t0, self._busy0, self._own0 = time.monotonic(), self._busy(), self._own()

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)

    @staticmethod
    def _own() -> float:
        t = psutil.Process().cpu_times()
        return t.user + t.system

    def pct(self) -> float | None:
        wall = time.monotonic() - self._t0
        other = (self._busy() - self._busy0) - (self._own() - self._own0)
        return max(0.0, other / wall * 100.0) if wall > 0 else None


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


def compare(benchmark: Any, *, kit: Encode, reference: Encode, sentences: Sequence[str],
            rounds: int, warmup_rounds: int = 1, server_pids: Sequence[int] = (),
            request_latencies: list[float] | None = None) -> dict[str, Any]:
    """Alternate reference and kit encodes of `sentences`; rates are sentences per second.

    The ratio compares each side's best round (the convention for CPU-bound timings, as timeit
    does): on a shared machine another process can make a multi-threaded reference round up to 10x
    slower (measured: 35-65 instead of ~430 sentences/s), which would flatter the kit. Medians are
    reported too, and the CPU other processes used during each reference round.

    server_pids: paused while the reference encodes (see `paused`); one untimed request after
    each pause lets the server's processes run again before the kit's round is timed, as a warm
    server would be (its latency is not among the round's). request_latencies: the kit
    client's per-request timings as they are appended (a TimingTransport's list), split here by
    round for the percentiles.
    """
    ref_s: list[float] = []
    ref_foreign: list[float | None] = []
    kit_s: list[float] = []
    kit_requests: list[list[float]] = []
    outputs: dict[str, np.ndarray] = {}
    calls = itertools.count()
    sink = request_latencies if request_latencies is not None else []

    def setup():  # untimed by pytest-benchmark: the reference encode of this round
        k = next(calls)
        with paused(server_pids):
            meter = ForeignCPU()
            t0 = time.perf_counter()
            outputs["reference"] = reference(sentences)
            ref_s.append(time.perf_counter() - t0)
            ref_foreign.append(meter.pct())
        if server_pids:
            kit(sentences[:1])  # untimed: see the docstring
        return (k,), {}

    def kit_round(k: int) -> None:
        first = len(sink)
        t0 = time.perf_counter()
        outputs["kit"] = kit(sentences)
        kit_s.append(time.perf_counter() - t0)
        kit_requests.append(sink[first:])

    benchmark.pedantic(kit_round, setup=setup, rounds=rounds, warmup_rounds=warmup_rounds,
                       iterations=1)
    skip = 0 if getattr(benchmark, "disabled", False) else warmup_rounds
    n = len(sentences)
    kit_rates = [n / s for s in kit_s[skip:]]
    ref_rates = [n / s for s in ref_s[skip:]]
    kit_median, ref_median = median(kit_rates), median(ref_rates)
    kit_best, ref_best = max(kit_rates, default=None), max(ref_rates, default=None)
    timed_requests = kit_requests[skip:]
    per_round = round_figures(timed_requests, kit_s[skip:], [n] * len(timed_requests),
                              [None] * len(timed_requests))
    return {"sentences": n, "warmup_rounds": warmup_rounds,
            "reference_server_paused": bool(server_pids),
            "kit_sentences_per_s_rounds": kit_rates, "kit_sentences_per_s": kit_median,
            "kit_sentences_per_s_round_spread_pct": spread_pct(kit_rates),
            "reference_sentences_per_s_rounds": ref_rates, "reference_sentences_per_s": ref_median,
            "reference_sentences_per_s_round_spread_pct": spread_pct(ref_rates),
            "kit_sentences_per_s_best": kit_best, "reference_sentences_per_s_best": ref_best,
            "reference_foreign_cpu_pct_rounds": ref_foreign[skip:],
            "encode_rate_ratio": kit_best / ref_best if kit_best and ref_best else None,
            "encode_rate_ratio_median": (kit_median / ref_median if kit_median and ref_median
                                         else None),
            "min_cosine_kit_vs_reference": _min_cosine(outputs["kit"], outputs["reference"]),
            "requests_timed": sum(len(r) for r in timed_requests),
            **latency_figures([t for r in timed_requests for t in r]),
            **{k: v for k, v in per_round.items() if k.startswith("latency_") or k == "rounds"},
            "latencies_ms_by_round": [[round(t * 1e3, 4) for t in r] for r in timed_requests]}
