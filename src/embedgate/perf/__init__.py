"""Performance measurement: load generation, percentiles, memory sampling and the perf gate."""
