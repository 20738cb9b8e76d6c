"""Wall time of one multi-stage study run by ``--workers 1`` against ``--workers 2`` (or any two settings), in
one run, each from an empty cache in a fresh process (start-up and worker spawning are counted), and a check
that both give the same metrics.

Run: .venv/bin/python bench/bench_workers.py [--study configs/...yaml] [--workers 1 2] [--keep DIR]
     .venv/bin/python bench/bench_workers.py --preset quick --seeds 0 -- --data-dir ../shared/data  # README command 1
     .venv/bin/python bench/bench_workers.py --compare RUN_A RUN_B     # two finished study folders

Default study: fairness, smoke preset (tiny random models), 2 seeds x 3 strategies = 18 stages (``--preset``,
``--seeds`` to change; ``--preset quick --seeds 0`` is the fairness run of README command 1, 9 stages).
Prints the wall times, the ratio, and per (run, strategy, role) the largest metric difference, against
the spread over seeds (what "the same results within seed noise" means for a study whose settings differ,
e.g. fp32 vs bf16; for identical settings on CPU the difference should be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from w2strust.experiment.study import study_metrics

DEFAULT_STUDY = """\
properties: [fairness]
preset: {preset}
strategies: [no_tft, weak_tft, weak_wts_tft]
seeds: [{seeds}]
"""


def run_study(study: Path, out: Path, workers: int, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "w2strust.cli", "study", str(study), "--workers", str(workers), "--out", str(out),
           *extra]
    started = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"bench_workers: {' '.join(cmd)} failed:\n{proc.stdout[-3000:]}")
    return seconds


def compare(a: Path, b: Path) -> str:
    """Largest |difference of the seed means| per (run, strategy, role) over all metrics, and the std over
    seeds it compares to."""
    ra, rb = study_metrics(a), study_metrics(b)
    if set(ra) != set(rb):
        return f"the two studies hold different runs/roles/seeds ({len(ra)} vs {len(rb)} records)"
    groups = defaultdict(list)
    for key in ra:
        groups[key[:3]].append(key)
    lines, worst = [], 0.0
    for group, keys in sorted(groups.items()):
        for m in sorted(ra[keys[0]]):
            va = np.array([ra[k][m] for k in keys], dtype=float)
            vb = np.array([rb[k][m] for k in keys], dtype=float)
            if not (np.isfinite(va).all() and np.isfinite(vb).all()):
                continue
            diff = abs(va.mean() - vb.mean())
            noise = max(va.std(ddof=1), vb.std(ddof=1)) if len(keys) > 1 else float("nan")
            worst = max(worst, diff)
            if diff > 0:
                lines.append(f"  {'/'.join(map(str, group))} {m}: |Δmean| {diff:.4f} (std over seeds {noise:.4f})")
    head = (f"metrics: identical in all {len(ra)} records" if worst == 0 else
            f"metrics: largest |Δmean| {worst:.4f}; {len(lines)} (role, metric) pairs differ:")
    return "\n".join([head, *lines[:40]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", help="study file (default: fairness smoke, 2 seeds, 3 strategies)")
    ap.add_argument("--preset", default="smoke", help="preset of the default study (default smoke)")
    ap.add_argument("--seeds", default="0,1", help="seeds of the default study (default 0,1)")
    ap.add_argument("--workers", type=int, nargs=2, default=[1, 2], metavar=("A", "B"))
    ap.add_argument("--keep", help="write the two study folders here (default: a temp folder, removed)")
    ap.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="only compare two finished studies")
    ap.add_argument("extra", nargs="*", help="more `w2strust study` options after --, e.g. -- --set data.n_weak=320")
    args = ap.parse_args()
    if args.compare:
        print(compare(Path(args.compare[0]), Path(args.compare[1])))
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        study = Path(args.study) if args.study else root / "bench-study.yaml"
        if not args.study:
            study.write_text(DEFAULT_STUDY.format(preset=args.preset, seeds=", ".join(args.seeds.split(","))))
        times = {}
        for w in args.workers:
            times[w] = run_study(study, root / f"workers-{w}", w, args.extra)
            n = json.loads((root / f"workers-{w}" / "study.json").read_text())["stages"]
            print(f"--workers {w}: {times[w]:.1f} s wall for {n['trained_now']} stages "
                  f"({os.cpu_count()} cores on this machine)", flush=True)
        a, b = args.workers
        print(f"ratio (workers {a} / workers {b} wall time): {times[a] / times[b]:.2f}x")
        print(compare(root / f"workers-{a}", root / f"workers-{b}"))


if __name__ == "__main__":
    main()
