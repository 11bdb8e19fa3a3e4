"""Time and peak memory of each exact ranking path (embedgate.quality.ranking).

Each path runs in a fresh process so its peak RSS is its own: the figure is the peak RSS minus
the RSS once the (seeded, random unit) vectors are in memory. Also checks that every path gave
the dense path's ranking. Usage:

    python scripts/bench_ranking.py [--docs 5183] [--queries 300] [--dim 384] [--k 100]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import psutil

PATHS = ("dense", "faiss", "chunked")


def one(path: str, docs: int, queries: int, dim: int, k: int, chunk: int) -> dict:
    from embedgate.quality.ranking import ranker
    rng = np.random.default_rng(0)
    d = rng.standard_normal((docs, dim), dtype=np.float32)
    q = rng.standard_normal((queries, dim), dtype=np.float32)
    rss0 = psutil.Process().memory_info().rss
    rank = ranker(path, doc_chunk=chunk)
    rank(q[:2], d[:chunk], k)  # imports and first-call costs outside the timing
    t0 = time.perf_counter()
    idx, scores = rank(q, d, k)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"path": path, "seconds": seconds, "peak_extra_mib": (peak - rss0) / 2**20,
            "vectors_mib": (d.nbytes + q.nbytes) / 2**20,
            "checksum": [int(idx[:, :10].sum()), float(scores[:, 0].sum())]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=5183)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--chunk", type=int, default=65536, help="documents per block (chunked)")
    ap.add_argument("--one", choices=PATHS, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.docs, a.queries, a.dim, a.k, a.chunk)))
        return
    rows = []
    for path in PATHS:
        out = subprocess.run([sys.executable, __file__, "--one", path, "--docs", str(a.docs),
                              "--queries", str(a.queries), "--dim", str(a.dim), "--k", str(a.k),
                              "--chunk", str(a.chunk)],
                             capture_output=True, text=True, timeout=3600, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    same = all(r["checksum"][0] == rows[0]["checksum"][0]
               and abs(r["checksum"][1] - rows[0]["checksum"][1]) < 1e-3 for r in rows)
    print(f"{a.docs} docs x {a.queries} queries, dim {a.dim}, top {a.k}; vectors "
          f"{rows[0]['vectors_mib']:.0f} MiB; same ranking as dense: {same}")
    for r in rows:
        print(f"  {r['path']:8s} {r['seconds'] * 1e3:9.1f} ms   peak extra RSS "
              f"{r['peak_extra_mib']:8.1f} MiB")


if __name__ == "__main__":
    main()
