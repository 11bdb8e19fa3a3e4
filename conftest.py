"""Top-level conftest: the kit itself is the `embedgate` pytest plugin (entry point in pyproject.toml).

Only what the kit's own tests need beyond the plugin lives here.
"""

pytest_plugins = ["pytester"]
