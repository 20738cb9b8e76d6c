"""Fairness on Adult (paper §3, eq. 3): covariance penalty in training; DPD and equalized odds via fairlearn.

The paper's penalty λ·Σ(a_i − ā)·f(x_i) (Zafar et al.) is unbounded below as a signed term, so the
regulariser here is its absolute value over the batch: λ·|mean((a − ā)·p(y=1|x))|.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    true_positive_rate,
)

from ..data import Splits, split_pool, subsample
from ..data.adult import UCI, load_adult
from .base import TrustProperty


def covariance_penalty(logits: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """|mean((a − ā)·p(y=1|x))| over the batch: zero when predictions do not co-vary with a."""
    p = logits.softmax(-1)[:, 1]
    a = group.to(p.dtype)
    return ((a - a.mean()) * p).mean().abs()


def fairness_metrics(y_true: np.ndarray, y_pred: np.ndarray, group: np.ndarray) -> dict[str, float]:
    rates = MetricFrame(metrics={"tpr": true_positive_rate, "fpr": false_positive_rate},
                        y_true=y_true, y_pred=y_pred, sensitive_features=group)
    gaps = rates.difference(method="between_groups")
    return {
        "dpd": float(demographic_parity_difference(y_true, y_pred, sensitive_features=group)),
        "eo_tpr_gap": float(gaps["tpr"]),
        "eo_fpr_gap": float(gaps["fpr"]),
        "equalized_odds": float(equalized_odds_difference(y_true, y_pred, sensitive_features=group)),
    }


class Fairness(TrustProperty):
    name = "fairness"
    # measured (bench/README.md "Recipes", grids C and D and "How much room Adult leaves"): on Adult every model
    # reaches ~84% at the quick preset's length and ~86% on all of it, even a random-init 1M BERT; a logistic
    # regression on frozen minilm-l1 embeddings reaches 84.8%, gradient boosting on the raw table 86.1% (3,500 rows)
    # to 87.4% (all rows): less than 3 points of room above the weakest bundled encoder
    gap_fix = ("Adult saturates near 84-87% (a frozen one-layer MiniLM probe 84.8%, gradient boosting on the table "
               "86-87%; bench/README.md \"Recipes\"), so no bundled pair has a 3-point gap; use a Hub pair "
               "(--preset paper: pythia-14m -> pythia-410m) or another dataset")
    trust_metric = "dpd"
    higher_is_better = False
    batch_level_regulariser = True  # the covariance penalty is computed over the batch
    other_trust_metrics = {"eo_tpr_gap": False}  # paper Figure A10: equalized odds (true-positive-rate gap)
    description = "Adult census income, protected attribute sex; |DPD| and equalized-odds gaps (fairlearn)"

    def presets(self) -> dict[str, dict[str, Any]]:
        tiny_train = dict(lr=1e-3, epochs=2, batch_size=32, max_length=64)
        return {
            "smoke": dict(weak_model="tiny-bert", strong_model="tiny-bert-wide", seeds=[0],
                          lambda_weak=2.0, lambda_wts=2.0, lambda_ceiling=2.0,
                          weak_train=tiny_train, strong_train=tiny_train,
                          data=dict(n_weak=160, n_wts=160, n_test=200), n_bootstrap=50),
            # One seed of the bundled pair in < 30 min on 2 CPU cores (README gives the measured time). Not a valid
            # weak-to-strong setting (the gates say so): every bundled encoder saturates near 84% on Adult at this
            # length of training. minilm-l1 as the weak model was measured and is no weaker here (84.2 / 84.5% vs
            # the ceiling's 84.1 / 84.7%, seeds 0 / 1; bench/README.md "Recipes"), so the preset keeps minilm-l3.
            "quick": dict(weak_model="minilm-l3", strong_model="minilm-l6", seeds=[0],
                          lambda_weak=3.0, lambda_wts=3.0, lambda_ceiling=3.0,
                          weak_train=dict(lr=2e-4, epochs=3, batch_size=32, max_length=72),
                          strong_train=dict(lr=1e-4, epochs=2, batch_size=32, max_length=72),
                          data=dict(n_weak=2000, n_wts=1500, n_test=2000), eval_batch_size=128),
            # The bundled pair at the paper's data scale (all of Adult) and 3 seeds: a GPU without the Hub.
            # The ceiling's λ is chosen by the stated rule from its own sweep (lambda_ceiling: auto, README):
            # on the full run a hand-set λ = 3 ceiling was less fair than the Weak+WTS TFT students.
            "full": dict(weak_model="minilm-l3", strong_model="minilm-l6", seeds=[0, 1, 2],
                         lambda_weak=3.0, lambda_wts=3.0, lambda_ceiling="auto", ceiling_lambdas=[0, 1, 3, 10, 30],
                         weak_train=dict(lr=2e-4, epochs=2, batch_size=64, max_length=72),
                         strong_train=dict(lr=1e-4, epochs=2, batch_size=64, max_length=72),
                         data=dict(n_weak=16000, n_wts=16000, n_test=0), eval_batch_size=512, n_bootstrap=1000),
            # The paper's setting (Pythia 14M -> 410M, Hub); for a GPU machine with internet.
            "paper": dict(weak_model="pythia-14m", strong_model="pythia-410m", seeds=[0, 1, 2],
                          lambda_weak=3.0, lambda_wts=3.0, lambda_ceiling=3.0, alpha_max=0.25, aux_warmup=0.2,
                          weak_train=dict(lr=5e-5, epochs=2, batch_size=32, max_length=96),
                          strong_train=dict(lr=1e-5, epochs=2, batch_size=32, max_length=96),
                          data=dict(n_weak=16000, n_wts=16000, n_test=0), eval_batch_size=256),
        }

    def load_splits(self, cfg, seed: int) -> Splits:
        pool, test = load_adult(cfg.resolved_data_dir())
        weak, wts = split_pool(pool, cfg.data.n_weak, cfg.data.n_wts, seed)
        return Splits(weak=weak, wts=wts, test=subsample(test, cfg.data.n_test, seed))

    def data_files(self, cfg):
        return [(f"adult/{f}", UCI + f, True) for f in ("adult.data", "adult.test")]

    def train_loss(self, forward, batch, targets, task_loss, lam):
        logits = forward(batch)
        loss = task_loss(logits, targets)
        if lam > 0:
            loss = loss + lam * covariance_penalty(logits, torch.as_tensor(batch["group"], device=logits.device))
        return loss

    @staticmethod
    def predicted_class(prob: np.ndarray) -> np.ndarray:
        """Class 1 where its probability is at least 0.5: one rule for the metrics, the trust value and the
        bootstrap's task accuracy (argmax would give a tie at exactly 0.5 to class 0)."""
        return (prob[:, 1] >= 0.5).astype(int)

    def metrics(self, preds, cols):
        y_pred = self.predicted_class(preds["prob"])
        out = {"task_accuracy": float((y_pred == cols["label"]).mean())}
        out.update(fairness_metrics(cols["label"], y_pred, cols["group"]))
        out["positive_rate"] = float(y_pred.mean())
        return out

    def trust_value(self, preds, cols):
        # |P(ŷ=1|a=1) − P(ŷ=1|a=0)|: fairlearn's DPD for two groups, without its per-call overhead
        # (the bootstrap calls this thousands of times; a test checks it equals fairlearn's value).
        y_pred = self.predicted_class(preds["prob"]).astype(bool)
        g = cols["group"].astype(bool)
        if g.all() or not g.any():
            return 0.0
        return float(abs(y_pred[g].mean() - y_pred[~g].mean()))

