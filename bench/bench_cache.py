"""A cached rerun of ``w2strust run`` against the first run (same command, same cache).

The first run trains every stage; the rerun finds every stage's artefact in the cache and only
rebuilds results.jsonl and the report. Both are timed as a user sees them: the whole command,
Python start-up and imports included. Ratio = first / rerun, measured in the same run; target >= 20x.
The reruns' results must equal the first run's (same numbers from the cache).

Run: PYTHONPATH=$PWD/src .venv/bin/python bench/bench_cache.py [--quick]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import common

TARGET = 20.0
# The fairness quick preset at reduced sizes (--quick) or as it is: the bundled minilm pair.
SMALL = ["--set", "data.n_weak=400", "--set", "data.n_wts=400", "--set", "data.n_test=400",
         "--set", "weak_train.epochs=1", "--set", "strong_train.epochs=1"]


def main() -> None:
    args = common.parser(__doc__).parse_args()
    extra = SMALL if args.quick else []
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "w2strust.cli", "run", "fairness", "--preset", "quick", "--data-dir",
               args.data_dir, "--out", str(Path(tmp) / "run"), *extra]
        print(f"# cached rerun: {' '.join(['w2strust', *cmd[3:]])}".replace(tmp, "$TMP"))
        print(f"machine: {common.machine()}\n")
        times, results = [], []
        for _ in range(2):
            sec, res = common.timed(subprocess.run, cmd, capture_output=True, text=True)
            if res.returncode != 0:
                sys.exit(res.stderr[-2000:])
            times.append(sec)
            results.append((Path(tmp) / "run" / "results.jsonl").read_text())
    ratio = times[0] / times[1]
    print(common.table([{"run": "first (trains every stage)", "seconds": times[0]},
                        {"run": "rerun (all from the cache)", "seconds": times[1]}], ["run", "seconds"]))
    print(f"\nspeed-up x{ratio:.1f} (target >= x{TARGET:.0f}: {'met' if ratio >= TARGET else 'missed'}); "
          f"results identical: {results[0] == results[1]}")


if __name__ == "__main__":
    main()
