"""Reproduce MTEB's published scores through a served model, on every benchmark split whose data
is in ../shared/data: the kit's score, mteb's own evaluation of the same server, the published
figure, and the differences.

    python scripts/reproduce_published.py [--profile all-minilm-l6-v2] [--out reports/repro.json]

It builds the benchmark mirror from ../shared/data (EMBEDGATE_SHARED_DATA) in a temp folder,
starts vLLM on CPU with the profile's model, runs `pytest -m mteb` against it (as a user would)
and then mteb's `task.evaluate` with an encoder that calls the same server. ATEC validation
alone is 40,000 texts; the whole run takes about 15 minutes on 2 cores (measured: README).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
BENCHMARKS = ("ATEC:validation", "AFQMC", "PAWSX",
              "XNLI:validation:ar,de,en,es,fr,ru,sw,th,vi,zh")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="all-minilm-l6-v2")
    parser.add_argument("--benchmark", action="append", default=[])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import shared_mirror
    from mteb_reference import kit_session, mteb_scores, served_encoder

    from embedgate.config.options import PathBase
    from embedgate.config.settings import resolve
    from embedgate.models.profiles import load_profile
    from embedgate.quality.benchmarks import BenchmarkData, parse_selection, resolve_benchmarks
    from embedgate.quality.mirror import DataLocator
    from embedgate.quality.truncation import LimitedEmbed
    from embedgate.serve.client import EmbeddingClient
    from embedgate.serve.launch import build_server

    names = tuple(args.benchmark) or BENCHMARKS
    work = Path(tempfile.mkdtemp(prefix="eg-repro-"))
    mirror = shared_mirror.build(work / "mirror", ("ATEC", "AFQMC", "PAWSX", "XNLI"))
    settings = resolve({"backend": "vllm", "cache_dir": str(work / "cache"),
                        "reports_dir": str(work / "server")}, {}, {}, PathBase(work, work))
    data = BenchmarkData(DataLocator(mirror=mirror, cache_dirs=()), datasets_cache=work / "ds")
    specs = resolve_benchmarks([parse_selection(n) for n in names], data)
    timings = {}
    with build_server(settings, load_profile(args.profile)) as info:
        started = time.perf_counter()
        # the server truncates texts over the limit, as sentence-transformers does for MTEB
        result, report = kit_session(work / "kit", info.base_url, args.profile, mirror, names,
                                     "--embedgate-truncation", "api", timeout=7200)
        timings["kit session s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        with EmbeddingClient(info.base_url, info.served_name) as client:
            # texts over the limit truncated by the server, as sentence-transformers would
            embed = LimitedEmbed(client, mode="api",
                                 max_tokens=load_profile(args.profile).max_tokens)
            theirs = mteb_scores(specs, data, served_encoder(embed, args.profile))
        timings["mteb on the same server s"] = round(time.perf_counter() - started, 1)
    rows = {}
    for spec in specs:
        entry = report.get(spec.name, {})
        published = (entry.get("published") or {}).get("score")
        kit = entry.get("score")
        rows[spec.name] = {"kit": kit, "mteb_same_server": theirs[spec.name],
                           "published": published,
                           "kit - published": None if None in (kit, published) else kit - published,
                           "kit - mteb": None if kit is None else kit - theirs[spec.name],
                           "n": entry.get("n"), "data_check": (entry.get("benchmark") or {})
                           .get("data_check")}
    print(f"{'benchmark':28} {'kit':>9} {'mteb':>9} {'published':>9} {'kit-pub':>9} "
          f"{'kit-mteb':>9}")
    for name, r in rows.items():
        def f(v, fmt="9.5f"):
            return format(v, fmt) if isinstance(v, float) else f"{'-':>9}"
        print(f"{name:28} {f(r['kit'])} {f(r['mteb_same_server'])} {f(r['published'])} "
              f"{f(r['kit - published'], '+9.6f')} {f(r['kit - mteb'], '+9.1e')}")
    print(f"pytest exit {result.returncode}; {timings}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows, "timings": timings,
                                        "pytest_exit": result.returncode}, indent=1))
    return 0 if result.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
