#!/usr/bin/env bash
# GPU benchmark of the study scheduler (issue 7): one property's `full` preset (PROPERTY, fairness by default),
# 3 seeds, run twice from an empty cache:
#   A. fp32, one stage at a time           (--workers 1, precision fp32)
#   B. bf16, several stages per GPU        (--workers NGPU*K --per-gpu K, precision bf16)
# then prints both wall times, the ratio (target: >= 4x) and whether the metrics agree within seed noise.
#
# Usage (from the repository root, on a machine with a GPU, after scripts/setup.sh):
#   bash bench/gpu_study.sh                         # fairness full, seeds 0,1,2, K=4, out runs/gpu-bench
#   PRESET=smoke K=2 OUT=/tmp/gb bash bench/gpu_study.sh    # a CPU check of the script itself (tiny models)
# Environment: PROPERTY (fairness), PRESET (full), SEEDS (0,1,2), K (4 stages per GPU), OUT (runs/gpu-bench), W2S (.venv/bin/w2strust),
# PY (.venv/bin/python), EXTRA (more `w2strust study` options, e.g. "--set data.n_weak=4000").
# Budget: one device session has 15 minutes; set a preset/size that fits (README: "Studies, parallel stages, clusters"), and note that
# run A alone of the full preset took ~6 min per seed on an H200 before this scheduler (issue 7).
set -euo pipefail
cd "$(dirname "$0")/.."
PROPERTY=${PROPERTY:-fairness}
PRESET=${PRESET:-full}
SEEDS=${SEEDS:-0,1,2}
K=${K:-4}
OUT=${OUT:-runs/gpu-bench}
W2S=${W2S:-.venv/bin/w2strust}
PY=${PY:-.venv/bin/python}
EXTRA=${EXTRA:-}
export TOKENIZERS_PARALLELISM=false

NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -gt 0 ]; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  WORKERS=$((NGPU * K))
else
  echo "gpu_study.sh: no GPU here: running both settings on CPU (a check of the script, not a GPU measurement)"
  WORKERS=$K
fi
# The precision key comes with the mixed-precision work (issue 7 item 5); without it both runs are fp32.
if "$PY" -c "from w2strust.config.schema import ExperimentConfig as C; C().precision" 2>/dev/null; then
  FP32=(--set precision=fp32); BF16=(--set precision=bf16)
  if [ "$NGPU" -eq 0 ]; then BF16=(--set precision=fp32); echo "(CPU: run B also fp32)"; fi
else
  echo "gpu_study.sh: this w2strust has no 'precision' config key: both runs use its default precision"
  FP32=(); BF16=()
fi
rm -rf "$OUT/A-fp32-serial" "$OUT/B-bf16-parallel"
mkdir -p "$OUT"

run() {  # name, then study options
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  "$W2S" study --properties "$PROPERTY" --preset "$PRESET" --seeds "$SEEDS" --out "$OUT/$name" "$@" $EXTRA \
    > "$OUT/$name.log" 2>&1 || { tail -30 "$OUT/$name.log"; exit 1; }
  t1=$(date +%s.%N)
  "$PY" -c "print($t1 - $t0)" > "$OUT/$name.seconds"
  echo "$name: $(cat "$OUT/$name.seconds") s wall" | tee -a "$OUT/times.txt"
}

: > "$OUT/times.txt"
run A-fp32-serial --workers 1 "${FP32[@]}"
run B-bf16-parallel --workers "$WORKERS" --per-gpu "$K" "${BF16[@]}"
"$PY" - "$OUT" "$WORKERS" "$K" <<'EOF' | tee -a "$OUT/times.txt"
import sys
from pathlib import Path
out, workers, k = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
a = float((out / "A-fp32-serial.seconds").read_text())
b = float((out / "B-bf16-parallel.seconds").read_text())
print(f"A (fp32, 1 stage at a time) {a:.1f} s; B (bf16, {workers} workers, {k} per GPU) {b:.1f} s; "
      f"speed-up {a / b:.2f}x (target >= 4x)")
EOF
"$PY" bench/bench_workers.py --compare "$OUT/A-fp32-serial" "$OUT/B-bf16-parallel" | tee -a "$OUT/times.txt"
grep -h " end " "$OUT/B-bf16-parallel/stages.log" | sed 's/.*device=/device=/' | sort | uniq -c
