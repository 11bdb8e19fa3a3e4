"""embedgate: a pytest kit that gates embedding-model and serving-stack upgrades.

The package is a pytest plugin (`embedgate.plugin`). Its parts, lowest layer first; a module may
import its own layer's package and the layers below it, never one above, and the three suite
packages of layer 3 never import each other (`tests/test_layering.py` checks this):

0. `resources` (where the shipped data is), `config` (options)
1. `models` (profiles, weights, the reference encoder)
2. `serve` (launching, readiness, teardown, GPU, the hf server, the HTTP client)
3. `quality` (datasets, tasks, metrics), `api` (API session, faults, proxy, strategies),
   `perf` (scenarios, load, memory, rules)
4. `verdict` (candidate vs baseline)
5. `report` (Markdown, HTML, terminal tables)
6. `session` (one pytest session's state), `cli` (`embedgate compare`)
7. `plugin` (pytest hooks and fixtures)

`suites` is the wheel's copy of the user-facing suites; nothing imports it.
"""

__version__ = "0.1.0"
