"""embedgate: a pytest kit that gates embedding-model and serving-stack upgrades.

The package is a pytest plugin (`embedgate.plugin`). Where things live:
settings.py (options), model_profiles.py (per-model facts and thresholds), backends.py (server
command lines), server.py (launch / ready / teardown), client.py (HTTP client), datasets.py and
metrics.py (quality scoring), run.py (session state), hf_server.py (the `hf` backend),
tiny_qwen.py (the offline tiny Qwen3 model).
"""

__version__ = "0.1.0"
