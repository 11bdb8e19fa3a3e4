"""Performance measurement: scenarios, load generation, percentiles, memory and the perf rules.

Owns: `scenarios` (the plan), `workload` (the texts and their calibrated lengths), `loadgen` (the
asyncio load generator), `locust_load` and its locustfile `locust_users` (the same load from a
Locust master and workers), `runner` (a scenario's rounds and figures), `stats`, `memory` (RSS/PSS
and NVML sampling), `encode_rate` and `overhead` (the kit's own costs), `trivial_server`,
`options` (the perf options), `rules` (the perf gate's rules and baseline) and `state` (one
session's perf results). Open loop: `arrivals` (schedules), `openloop` (the generator on a
schedule), `traffic` (workloads from files, batch mixes), `slo` (SLO rules, goodput, verdicts),
`sweep` (rate sweeps, the max-sustainable-rate search), `metrics_scrape` (the server's
/metrics), `capacity` (the capacity scenario), `client_headroom`, `load_options` and `bench`
(the generator's command line).

May import: `embedgate.serve`, `embedgate.models`, `embedgate.config`, `embedgate.resources`;
never its siblings `embedgate.quality` and `embedgate.api`.
"""
