#!/usr/bin/env bash
# Run a study (configs/study-cpu.yaml by default) and copy its report into docs/results/<name>/:
# the study report, Table 1 set against the paper, every run folder's config/results/summary/report/figures,
# the curves, and machine.md (CPU, GPU if any, command, wall time, commit). The cache is not copied (it holds the weak
# model's generated e-mail text for privacy); nothing under docs/results holds raw data.
#   bash scripts/run-study.sh                      # configs/study-cpu.yaml -> docs/results/study-cpu
#   STUDY=configs/x.yaml NAME=x bash scripts/run-study.sh --workers 2
#   STUDY=configs/study-gpu.yaml bash scripts/run-study.sh --workers 8 --per-gpu 8   # one GPU, 8 stages at once
# Extra arguments go to `w2strust study`. A killed run resumes from its cache when started again.
set -euo pipefail
cd "$(dirname "$0")/.."
STUDY=${STUDY:-configs/study-cpu.yaml}
NAME=${NAME:-$(basename "$STUDY" .yaml)}
OUT=${OUT:-runs/$NAME}
DEST=docs/results/$NAME
DATA=${W2STRUST_DATA:-../shared/data}
W2S=${W2S:-.venv/bin/w2strust}
PY=${PY:-.venv/bin/python}
cmd=("$W2S" study "$STUDY" --out "$OUT" --data-dir "$DATA" "$@")
start=$(date +%s)
"${cmd[@]}"
wall=$(( $(date +%s) - start ))

rm -rf "$DEST" && mkdir -p "$DEST"
# Everything the report links to, by relative path; no cache folders, no stage temp files.
(cd "$OUT" && find . -path ./cache -prune -o -path '*/cache' -prune -o -type f \
    \( -name '*.md' -o -name '*.png' -o -name '*.json' -o -name '*.jsonl' -o -name 'config.yaml' -o -name '*.log' \) \
    -print) | while read -r f; do mkdir -p "$DEST/$(dirname "$f")" && cp "$OUT/$f" "$DEST/$f"; done
{
  echo "# Machine and command"
  echo
  echo "- command: \`${cmd[*]}\` (from the repository root)"
  echo "- wall time: ${wall} s ($(( wall / 60 )) min $(( wall % 60 )) s), including stages already in \`$OUT/cache\`"
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | paste -sd ';')"
  fi
  echo "- software: $("$PY" -c 'import sys, torch, transformers; print(f"Python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}")')"
  echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores visible; $(free -g | awk '/Mem:/{print $2}') GiB RAM"
  if git rev-parse HEAD >/dev/null 2>&1; then
    echo "- commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- src configs || echo ' (with uncommitted changes)')"
  else  # a copy of the tree without .git (a lent GPU machine): the caller says which commit it is
    echo "- commit: ${COMMIT:-unknown (no .git here; set COMMIT)}"
  fi
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
} > "$DEST/machine.md"
echo "report: $DEST/report.md (wall ${wall}s)"
