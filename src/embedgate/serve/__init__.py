"""The server under test: how it is launched, when it is ready, how it is stopped and how to
talk to it.

Owns: `backends` (command lines of sglang, vllm, hf), `launch` (choosing and building the
server), `lifecycle` (start, readiness, teardown, the process tree), `fleet` (replicas behind a
balancer as one server), `liveness` (the watchdog), `gpu` (NVML discovery and
memory), `hf_server` (the kit's own sentence-transformers server) and `client` (the HTTP client).

May import: `embedgate.models`, `embedgate.config`, `embedgate.resources`.
"""
