"""Quality scoring: datasets, task definitions, metrics with their CIs, and the quality report.

Owns: `datasets` (loaders), `tasks` (built-in and user tasks), `metrics` (MTEB's definitions via
scipy, scikit-learn and pytrec_eval; bootstrap CIs), `nulls` (what a random encoder scores on a
dataset: the floor every bar must clear), `lexical` (the BM25 reference point), `scoring`
(encoding a task through the server, scoring it and judging it against its bar and null),
`ranking` (exact top-k: dense, FAISS, doc-chunked) and `results_json` (the ``quality.json``
schema). MTEB benchmarks: `benchmarks` (mteb's task
definitions as quality tasks), `mirror` (where their data is: mirror folder, HF cache, hub),
`anchors` (published scores, bars, the reproduction check), `mteb_model` (a served model as an
mteb encoder), `truncation` (texts over the model's limit), `benchmark_options`, and `calibrate`
(bars from a run).

May import: `embedgate.serve`, `embedgate.models`, `embedgate.config`, `embedgate.resources`;
never its siblings `embedgate.api` and `embedgate.perf`.
"""
