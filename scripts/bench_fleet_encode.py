"""Encode rate of a corpus through one replica, two replicas (client-spread) and the balancer.

Launches --replicas N of --backend behind --balancer (as `--embedgate-replicas` does), encodes
--docs passages of about --words words each (the perf suite's word stream), and prints
documents per second and seconds per document for each route, with the replicas' RSS. Usage:

    python scripts/bench_fleet_encode.py [--backend vllm] [--replicas 2] [--docs 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from embedgate.config.options import PathBase
from embedgate.config.settings import resolve
from embedgate.models.profiles import load_profile
from embedgate.perf.workload import default_stream
from embedgate.resources import datasets_dir
from embedgate.serve.client import EmbeddingClient
from embedgate.serve.launch import build_server


def rate(urls: list[str], model: str, texts: list[str], batch: int, concurrency: int) -> float:
    with EmbeddingClient(urls[0], model, extra_urls=urls[1:], batch_size=batch,
                         concurrency=concurrency) as client:
        client.embed(texts[:batch])  # warm
        t0 = time.perf_counter()
        out = client.embed(texts)
        seconds = time.perf_counter() - t0
    assert out.shape[0] == len(texts)
    return len(texts) / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="vllm")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--balancer", default="nginx")
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--words", type=int, default=56, help="MS MARCO passages: ~56 words")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=2, help="in flight per server")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="embedgate-bench-"))
    settings = resolve({"backend": a.backend, "replicas": a.replicas, "balancer": a.balancer,
                        "reports_dir": str(work / "reports"), "cache_dir": ".embedgate_cache"},
                       {}, {}, PathBase.of(Path.cwd()))
    stream = default_stream(datasets_dir() / "sts_en.tsv")
    texts = stream.texts(a.words, a.docs, first=5000)
    with build_server(settings, load_profile("all-minilm-l6-v2")) as info:
        replicas = [m["base_url"] for m in info.members if m["role"].startswith("replica")]
        print(f"{a.backend} x{a.replicas} behind {a.balancer}, ready in {info.startup_s:.0f} s;"
              f" RSS at ready: " + ", ".join(f"{m['role']} {m['rss_at_ready_bytes'] / 2**20:.0f}"
                                            f" MiB" for m in info.members)
              + f"; total {info.rss_at_ready_bytes / 2**20:.0f} MiB")
        routes = [("one replica", replicas[:1], a.concurrency),
                  (f"{a.replicas} replicas, client-spread", replicas, a.concurrency),
                  ("through the balancer", [info.base_url], a.concurrency * a.replicas)]
        for name, urls, conc in routes:
            docs_s = rate(urls, info.served_name, texts, a.batch, conc)
            print(f"  {name:32s} {docs_s:8.1f} docs/s  {1e3 / docs_s:7.2f} ms/doc "
                  f"({a.docs} docs of {a.words} words, batch {a.batch}, {conc} in flight)")


if __name__ == "__main__":
    main()
