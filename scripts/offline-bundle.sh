#!/usr/bin/env bash
# Move a run to a machine without a network (a GPU node, an air-gapped cluster): one tar with the materialised
# models, the data folders and the pinned pure-Python wheels the target may lack; unpacked there, `w2strust` runs as
# here. This is how docs/results/study-gpu/ ran (split into parts with `split -b 60M`, as that machine took 64 MiB per
# copy).
#   bash scripts/offline-bundle.sh pack bundle.tar minilm-l3 minilm-l6      # here (after scripts/setup.sh)
#   bash scripts/offline-bundle.sh unpack bundle.tar /opt/w2s               # there, from the repository root
# then, as unpack prints: export PYTHONPATH=$PWD/src:/opt/w2s/site W2STRUST_CACHE=/opt/w2s/cache
#   W2STRUST_DATA=/opt/w2s/data; python -m w2strust ...
# Environment for pack: DATA (sst2 ood_style: the folders of shared/data to take; OOD needs these two, fairness adult,
# adversarial sst2 advglue, privacy enron), PYVER (3.12: the target's Python), WHEELS (the packages to take as wheels,
# at the versions installed here, i.e. pyproject's pins; the target must have torch and the rest), PY (.venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
verb=${1:-}; tarball=${2:-}
[ -n "$verb" ] && [ -n "$tarball" ] || { sed -n '2,13p' "$0"; exit 2; }
case "$verb" in
pack)
  shift 2
  [ $# -gt 0 ] || { echo "offline-bundle: name the models to take (e.g. minilm-l3 minilm-l6)" >&2; exit 2; }
  PY=${PY:-.venv/bin/python}; PYVER=${PYVER:-3.12}; DATA=${DATA:-sst2 ood_style}
  WHEELS=${WHEELS:-transformers datasets dill multiprocess opacus fairlearn gguf}
  # shellcheck disable=SC2086  # name==version as installed here by scripts/setup.sh: no second copy of the pins
  pins=$("$PY" -c "import sys, importlib.metadata as md; print(' '.join(f'{n}=={md.version(n)}' for n in sys.argv[1:]))" $WHEELS)
  data_root=${W2STRUST_DATA:-../shared/data}
  stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
  mkdir -p "$stage/models" "$stage/data" "$stage/whl"
  for m in "$@"; do  # materialised first where needed; a cut model (minilm-l1) comes from its base's folder there
    src=$("$PY" -c "import sys; from w2strust.models import model_path; print(model_path(sys.argv[1]))" "$m")
    cp -r "$src" "$stage/models/$m"
  done
  for d in $DATA; do cp -r "$data_root/$d" "$stage/data/"; done
  # shellcheck disable=SC2086
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d "$stage/whl" $pins
  tar -cf "$tarball" -C "$stage" models data whl
  echo "offline-bundle: $tarball ($(du -h "$tarball" | cut -f1)): models $*; data $DATA; wheels for Python $PYVER: $pins"
  ;;
unpack)
  dest=${3:?unpack needs a destination folder}; PY=${PY:-python3}
  mkdir -p "$dest/cache/models" "$dest/site"
  tar -xf "$tarball" -C "$dest"
  cp -r "$dest"/models/* "$dest/cache/models/"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$dest/site" "$dest"/whl/*.whl
  echo "export PYTHONPATH=$PWD/src:$dest/site W2STRUST_CACHE=$dest/cache W2STRUST_DATA=$dest/data HF_HUB_OFFLINE=1"
  ;;
*) echo "offline-bundle: pack or unpack, not '$verb'" >&2; exit 2 ;;
esac
