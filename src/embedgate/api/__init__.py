"""The api suite's kit: what a check of the OpenAI embeddings contract needs, and its fault proxy.

``session`` (ApiSession: the server through raw HTTP, every answer judged) and ``findings``
(failures worded as sent / got / expected) are what the checks in ``tests_api/`` and a user's
own checks are written with; ``strategies`` and ``hypothesis_profiles`` drive the fuzz tests;
``faults`` (the catalogue of wrong answers) and ``proxy`` (FaultProxy, which serves one of them
in front of a real server) let the kit show that every check can fail.

May import: embedgate.serve, embedgate.models, embedgate.config and embedgate.resources; never
embedgate.quality or embedgate.perf (siblings), nor anything above them.
"""
