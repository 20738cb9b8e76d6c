"""Data fingerprint in the stage key, strict JSON, non-finite checks, device forms."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from w2strust.config.build import build_config
from w2strust.errors import W2SError
from w2strust.experiment.plan import plan
from w2strust.io import atomic_write_json, dumps_strict
from w2strust.training.device import resolve_device
from w2strust.training.finite import NonFiniteError, check_arrays, check_loss, check_metrics


def _keys(data_dir: Path) -> set[str]:
    return {s.key for s in plan(build_config("fairness", "smoke", overrides={"data": {"data_dir": str(data_dir)}}))[0]}


def test_a_changed_data_file_changes_every_stage_key(tmp_path):
    shared = Path(os.environ["W2STRUST_DATA"])
    copy = tmp_path / "data"
    (copy / "adult").mkdir(parents=True)
    for f in ("adult.data", "adult.test"):
        shutil.copy(shared / "adult" / f, copy / "adult" / f)
    original = _keys(copy)
    assert original == _keys(shared)  # where the files live is not part of the key, what they hold is
    with open(copy / "adult" / "adult.data", "a") as f:
        f.write("39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, "
                "2174, 0, 40, United-States, <=50K\n")
    assert original.isdisjoint(_keys(copy))


def test_strict_json_writes_null_for_nan_and_infinity(tmp_path):
    obj = {"a": float("nan"), "b": [1.0, float("inf"), np.float32("nan")], "c": np.array([0.5, -np.inf]),
           "d": np.int64(3)}
    text = dumps_strict(obj)
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON")) == \
        {"a": None, "b": [1.0, None, None], "c": [0.5, None], "d": 3}
    atomic_write_json(tmp_path / "x.json", obj)
    assert "NaN" not in (tmp_path / "x.json").read_text() and "Infinity" not in (tmp_path / "x.json").read_text()


def test_non_finite_checks_name_the_stage_and_the_step():
    check_loss(0.7, 3, 10, "seed 0 weak m", 1e-3, 0.0)
    with pytest.raises(NonFiniteError, match=r"seed 0 weak m: the training loss became nan at step 3/10"):
        check_loss(math.nan, 3, 10, "seed 0 weak m", 1e-3, 0.0)
    with pytest.raises(NonFiniteError, match=r"λ=3\); likely cause: .* λ too large"):
        check_loss(math.inf, 3, 10, "s", 1e-3, 3.0)
    # DP-SGD: λ is ε, and the risky direction is a small ε (more noise), not a large one
    with pytest.raises(NonFiniteError, match=r"ε=8\); likely cause: .* ε too small") as err:
        check_loss(math.nan, 3, 10, "s", 1e-3, 8.0, dp_epsilon=True)
    assert "λ" not in str(err.value)
    with pytest.raises(NonFiniteError, match="2 of 4 values of its prob"):
        check_arrays("s", {"prob": np.array([[0.5, np.nan], [np.inf, 0.5]]), "label": np.array([0, 1])})
    check_metrics("s", {"pii_extraction": math.nan, "extraction_rate": 0.1}, may_be_missing=("pii_extraction",))
    with pytest.raises(W2SError, match="metric perplexity is inf"):
        check_metrics("s", {"perplexity": math.inf})


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:1", "mps"])
def test_resolve_device_accepts_every_form(name):
    assert str(resolve_device(name)) == name
