"""Measure what moves an MTEB score when nothing is wrong: dtype and batch composition.

Scores each benchmark (mteb's own evaluation, data from a mirror) with the model in process
(sentence-transformers on CPU) in float32, in bfloat16, and in float32 with another batch size,
and prints the differences: the effects a profile's [published] tolerance must absorb. (What
batch composition does on a server is in tests/test_benchmarks_e2e.py.)

    python scripts/benchmark_tolerance.py --mirror DIR --profile all-minilm-l6-v2 \\
        AFQMC PAWSX XNLI:validation:en,zh

With no --mirror, one is built from ../shared/data (EMBEDGATE_SHARED_DATA) in a temp folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--profile", default="all-minilm-l6-v2")
    parser.add_argument("--model", help="model directory (default: the profile's weights)")
    parser.add_argument("--mirror", type=Path)
    parser.add_argument("--variant", action="append", default=[],
                        help="fp32-32, fp32-7, bf16-32 (dtype-batch size); default all three")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from embedgate.models.profiles import load_profile
    from embedgate.quality.benchmarks import (BenchmarkData, parse_selection,
                                              resolve_benchmarks)
    from embedgate.quality.mirror import DataLocator
    from embedgate.quality.mteb_model import ServedEncoder

    profile = load_profile(args.profile)
    model_dir = args.model or profile.local_model_path(Path(tempfile.gettempdir()))
    mirror = args.mirror
    if mirror is None:
        import shared_mirror
        mirror = shared_mirror.build(Path(tempfile.mkdtemp(prefix="eg-mirror-")))
    data = BenchmarkData(DataLocator(mirror=mirror, cache_dirs=()),
                         datasets_cache=Path(tempfile.mkdtemp(prefix="eg-ds-")))
    specs = resolve_benchmarks([parse_selection(n) for n in args.names], data)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    chosen = args.variant or ["fp32-32", "fp32-7", "bf16-32"]
    variants = {f"{v.split('-')[0]} batch {v.split('-')[1]}": (dtypes[v.split("-")[0]],
                                                              int(v.split("-")[1]))
                for v in chosen}
    rows: dict[str, dict[str, float]] = {s.name: {} for s in specs}
    for label, (dtype, batch) in variants.items():
        st = SentenceTransformer(str(model_dir), device="cpu", model_kwargs={"torch_dtype": dtype})

        def embed(texts, st=st, batch=batch):
            return st.encode(list(texts), batch_size=batch, normalize_embeddings=profile.normalize,
                             convert_to_numpy=True).astype("float32")
        for spec in specs:
            task = data.task(spec.task_name)
            started = time.perf_counter()
            scores = task.evaluate(ServedEncoder(embed, profile), spec.split,
                                   subsets_to_run=[spec.subset],
                                   encode_kwargs={"batch_size": 32})
            rows[spec.name][label] = scores[spec.subset]["main_score"]
            print(f"{spec.name} {label}: {rows[spec.name][label]:.6f} "
                  f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    def diff(r, a, b):
        return r[a] - r[b] if a in r and b in r else None
    print(json.dumps({name: {**r, "bf16 - fp32": diff(r, "bf16 batch 32", "fp32 batch 32"),
                             "batch 7 - batch 32": diff(r, "fp32 batch 7", "fp32 batch 32")}
                      for name, r in rows.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
