"""Same seed, same command -> the same numbers, bit for bit, for every property.

Each smoke preset runs twice in two fresh processes (so the global RNG state a process starts with, which
differs between processes, cannot leak into a result) and every metric, prediction array, weak label and
weak generation is compared exactly. One strategy (Weak+WTS TFT) covers every role and every regulariser
(weak and WTS models regularised, WTS-Aux-Loss, the ceiling); the data are cut to keep this to seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SMALL = {"fairness": ["--set", "data.n_weak=64", "--set", "data.n_wts=64", "--set", "data.n_test=64"],
         "ood": ["--set", "data.n_weak=64", "--set", "data.n_wts=64", "--set", "data.n_val=32",
                 "--set", "data.n_test=16"],
         "adversarial": [],  # the smoke preset's generated set is already small
         "privacy": []}


def run(prop: str, out: Path) -> None:
    cmd = [sys.executable, "-m", "w2strust.cli", "run", prop, "--preset", "smoke", "--strategies", "weak_wts_tft",
           *SMALL[prop], "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"}, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]


def artefacts(out: Path) -> dict[str, object]:
    """Everything a stage computed: metrics, prediction arrays, weak labels / generations (not timings)."""
    found: dict[str, object] = {}
    for stage in sorted(p for p in (out / "cache").iterdir() if not p.name.startswith(".")):  # not .locks
        found[f"{stage.name}/metrics"] = json.loads((stage / "meta.json").read_text())["metrics"]
        with np.load(stage / "preds.npz") as preds:
            for k in preds.files:
                found[f"{stage.name}/preds/{k}"] = (preds[k].dtype.str, preds[k].shape, preds[k].tobytes())
        if (stage / "weak_labels.npy").exists():
            found[f"{stage.name}/weak_labels"] = np.load(stage / "weak_labels.npy").tobytes()
        if (stage / "weak_outputs.json").exists():
            found[f"{stage.name}/weak_outputs"] = (stage / "weak_outputs.json").read_text()
    return found


@pytest.mark.slow
@pytest.mark.parametrize("prop", ["fairness", "ood", "adversarial", "privacy"])
def test_smoke_preset_twice_gives_identical_results(prop, tmp_path):
    run(prop, tmp_path / "a")
    run(prop, tmp_path / "b")
    assert (tmp_path / "a" / "results.jsonl").read_text() == (tmp_path / "b" / "results.jsonl").read_text()
    a, b = artefacts(tmp_path / "a"), artefacts(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) >= 3
    for key in a:
        assert a[key] == b[key], f"{prop}: {key} differs between two runs with the same seed"
