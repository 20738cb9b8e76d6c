"""Run the whole benchmark suite, one script after the other, and print each one's figures.

Run: PYTHONPATH=$PWD/src .venv/bin/python bench/run_all.py --quick     (< 20 minutes on 2 CPU cores)
     PYTHONPATH=$PWD/src .venv/bin/python bench/run_all.py             (full sizes; about an hour)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import common

# bench_buckets.py (accuracy over 3 seeds, ~2 min) runs on its own: with it the quick suite took 20.6 min.
SCRIPTS = ["bench_train.py", "bench_predict.py", "bench_dropout.py", "bench_dp.py", "bench_cache.py",
           "bench_scaling.py"]


def main() -> None:
    ap = common.parser(__doc__)
    ap.add_argument("--only", help="comma-separated subset of " + ",".join(SCRIPTS))
    args = ap.parse_args()
    chosen = args.only.split(",") if args.only else SCRIPTS
    started = time.perf_counter()
    failed = []
    for script in chosen:
        t = time.perf_counter()
        cmd = [sys.executable, str(Path(__file__).with_name(script)), "--data-dir", args.data_dir]
        rc = subprocess.run(cmd + (["--quick"] if args.quick else [])).returncode
        print(f"\n[{script}: {time.perf_counter() - t:.0f}s{'' if rc == 0 else f', FAILED (exit {rc})'}]\n",
              flush=True)
        if rc:
            failed.append(script)
    print(f"suite: {time.perf_counter() - started:.0f}s" + (f"; failed: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
