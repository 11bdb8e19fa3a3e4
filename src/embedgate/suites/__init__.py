"""The user-facing suites, as shipped in the wheel: run them with ``pytest --pyargs embedgate.suites``.

In the checkout they are the top-level ``tests_quality/``, ``tests_api/`` and ``tests_perf/``
(pytest's ``testpaths``); the wheel carries copies of those folders here. Nothing in the kit
imports this package.
"""
