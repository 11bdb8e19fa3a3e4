"""The latency-vs-load curve in the HTML report (issue 13): a plot for every scenario with an
open-loop load curve, the runs side by side; none without one."""

from pathlib import Path

from embedgate.perf.slo import parse_slos
from embedgate.perf.sweep import CapacitySearch, rates_from_capacity
from embedgate.report.html import load_curve_plot, render_runs
from embedgate.verdict.compare import RunReports
from perf_fakes import fifo_server


def capacity_run(tmp_path: Path, service_s: float, name: str) -> RunReports:
    def measure(rate, attempt):
        return fifo_server(rate, service_s=service_s, n=max(50, int(rate * 2)), seed=attempt)

    rules = parse_slos(["p95_ms<=50", "error_rate<=0"])
    figures = CapacitySearch(measure, rules).run(rates_from_capacity(100.0), searches=1).figures()
    figures.update(scenario="capacity/open_loop", slo=[r.text for r in rules],
                   closed_loop_curve=[{"concurrency": 4, "throughput_rps": 90.0, "p95_ms": 45.0}])
    doc = {"benchmarks": [{"name": "cap", "extra_info": figures}]}
    return RunReports(tmp_path / name, None, doc, None)


def test_load_curve_plot_is_drawn_for_open_loop_scenarios(tmp_path):
    runs = [capacity_run(tmp_path, 0.010, "base"), capacity_run(tmp_path, 0.020, "new")]
    uri = load_curve_plot(runs, ["base", "new"])
    assert uri.startswith("data:image/png;base64,") and len(uri) > 10_000
    page = render_runs(runs)
    assert "<h2>Latency vs load plot</h2>" in page


def test_no_load_curve_no_plot(tmp_path):
    run = RunReports(tmp_path, None, {"benchmarks": [{"name": "x", "extra_info": {
        "scenario": "latency/short", "latencies_ms_by_round": [[1.0, 2.0]]}}]}, None)
    assert load_curve_plot([run], ["a"]) is None
