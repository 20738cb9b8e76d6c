"""The presets meant for results (quick, full) give every stage enough optimizer steps to leave the loss plateau
(bench/README.md "Recipes": minilm-l6 at its recipe leaves it by step 21-24) and use the measured recipes."""

import math
from pathlib import Path

import pytest

from w2strust.config.build import build_config
from w2strust.experiment.study import load_study
from w2strust.models import RECIPES

MIN_STEPS = 120  # per stage, for every model whose data size is known before training
STUDY = Path(__file__).resolve().parents[2] / "configs" / "study-cpu.yaml"


def _steps(rows: int, train) -> int:
    return math.ceil(train.epochs * math.ceil(rows / train.batch_size))


def _check(cfg) -> None:
    d = cfg.data
    assert _steps(d.n_weak, cfg.weak_train) >= MIN_STEPS, "weak model"
    assert _steps(d.n_wts, cfg.strong_train) >= MIN_STEPS, "WTS students"
    assert _steps(d.n_weak + d.n_wts, cfg.strong_train) >= MIN_STEPS, "ceiling"


# fairness keeps its earlier recipe: no weak -> strong pair with a 3-point gap on Adult fits the CPU (bench/README.md,
# "Recipes"), so its CPU runs are reported invalid and it is left to the GPU presets
@pytest.mark.parametrize("prop", ["ood"])
@pytest.mark.parametrize("preset", ["quick", "full"])
def test_presets_give_every_stage_a_minimum_of_optimizer_steps(prop, preset):
    _check(build_config(prop, preset))


def test_the_cpu_study_keeps_the_minimum():
    _, runs = load_study(STUDY)
    for r in runs:
        if r.cfg.property == "ood":
            _check(r.cfg)


@pytest.mark.parametrize("prop", ["ood", "adversarial"])
def test_the_bundled_encoders_train_with_their_measured_recipes(prop):
    cfg = build_config(prop, "quick")
    for model, train in ((cfg.weak_model, cfg.weak_train), (cfg.strong_model, cfg.strong_train)):
        assert (train.lr, train.lr_warmup) == (RECIPES[model]["lr"], RECIPES[model]["lr_warmup"])
