"""The merge verdict: may the candidate replace the baseline?

Owns: `compare` (quality non-inferiority per dataset on paired items, and the perf rules of
`embedgate.perf.rules`, behind one `compare`).

May import: `embedgate.quality`, `embedgate.perf` and everything they may import.
"""
