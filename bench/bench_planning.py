"""Planning a large study: time and memory against the number of runs (issue 19, "Planning scales").

A fairness (smoke) study over 2, 3 and 4 config keys x 10 values (100, 1,000 and 10,000 runs) is loaded and planned
in this process (imports done first), as ``w2strust study --dry-run`` does before it prints. The baseline is the
100-run grid, measured in the same run: ``per-run ratio`` = (seconds per run of the grid) / (seconds per run of the
baseline) stays near 1 when planning is linear in the number of runs; ``MB`` is the growth of the peak RSS.
Targets: 10,000 runs plan in seconds (under 15 s) and the per-run ratio stays under 2.

Run: PYTHONPATH=$PWD/src .venv/bin/python bench/bench_planning.py [--quick]   (--quick: up to 1,000 runs)
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import common

KEYS = ["lambda_wts", "lambda_weak", "alpha_max", "weak_train.lr"]


def study(tmp: Path, n_keys: int) -> Path:
    values = [round(0.1 * i, 1) for i in range(1, 11)]
    lines = ["properties: [fairness]", "preset: smoke"]
    for k in KEYS[:n_keys]:
        if k == "weak_train.lr":
            lines.append(f"weak_train: {{lr: {[v / 1000 for v in values]}}}")
        else:
            lines.append(f"{k}: {values}")
    path = tmp / f"grid{n_keys}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    args = common.parser(__doc__).parse_args()
    common.quiet()
    import os

    os.environ.setdefault("W2STRUST_DATA", args.data_dir)
    from w2strust.config.build import build_config
    from w2strust.experiment.study import load_study, study_jobs

    build_config("fairness", "smoke")  # imports and the property's first look-ups, outside the timings
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_keys in (2, 3) if args.quick else (2, 3, 4):
            before = peak_mb()
            t0 = time.perf_counter()
            _, runs = load_study(study(Path(tmp), n_keys))
            t1 = time.perf_counter()
            jobs, _ = study_jobs(runs, 1)
            t2 = time.perf_counter()
            rows.append((len(runs), len(jobs), t1 - t0, t2 - t1, peak_mb() - before))
            del runs, jobs
    base = (rows[0][2] + rows[0][3]) / rows[0][0]
    print(f"{'runs':>7} {'stages':>7} {'load s':>7} {'plan s':>7} {'total s':>8} {'ms/run':>7} "
          f"{'per-run ratio':>13} {'MB':>6}")
    for n, stages, load, plan, mb in rows:
        total = load + plan
        print(f"{n:>7,} {stages:>7,} {load:>7.2f} {plan:>7.2f} {total:>8.2f} {1000 * total / n:>7.2f} "
              f"{total / n / base:>13.2f} {mb:>6.0f}")
    print(f"baseline: the {rows[0][0]}-run grid ({1000 * base:.2f} ms/run); {common.machine()}")


if __name__ == "__main__":
    main()
