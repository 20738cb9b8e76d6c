"""The interface every trust property implements (fairness, OOD, adversarial, privacy, ...)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from ..config.schema import ROLES
from ..data import Splits

Forward = Callable[[dict[str, list]], torch.Tensor]  # a batch of rows -> logits
Predict = Callable[[Dataset, str], np.ndarray]  # (dataset, text column) -> class probabilities


class TrustProperty:
    name: str = ""
    task: str = "classification"  # "classification", or "generation" (causal LMs, see properties/privacy.py)
    roles: tuple[str, ...] = ROLES  # the models compared; generation has no WTS-Aux-Loss (no soft labels)
    num_labels: int = 2
    trust_metric: str = ""  # the metric the WTS-trust test compares across roles
    higher_is_better: bool = True  # for trust_metric
    task_metric: str = "task_accuracy"  # the performance metric shown beside the trust metric
    task_higher_is_better: bool = True  # for task_metric (privacy's perplexity: lower is better)
    lambda_meaning: str = "regulariser weight"  # what λ_W / λ_WTS / λ_ceiling mean for this property
    # Second trust metrics drawn like Figure 2 (paper A10: equalized odds; A11: membership inference): name ->
    # higher is more trustworthy.
    other_trust_metrics: dict[str, bool] = {}
    lambda_grid: tuple[float, ...] = (0.0, 1.0, 3.0, 10.0)  # candidates of lambda_ceiling: auto (0 = reference)
    # A larger λ > 0 regularises more (privacy's ε: less). The λ rule's reference, without λ = 0, is the least
    # regularised λ (experiment/ceiling_rule.py).
    larger_lambda_regularises_more: bool = True
    description: str = ""
    # True when the regulariser is a statistic of the whole batch (fairness: a covariance over the batch), so
    # which rows share a batch changes the objective: such properties train on random batches, not length buckets.
    batch_level_regulariser: bool = False
    key_extra: dict[str, Any] = {}  # put in every stage key: change it when what λ means changes
    may_be_missing: tuple[str, ...] = ()  # metrics that are NaN (stored as null) when nothing can be measured
    # The capability gap (report/validity.py) compares the ceiling with the weak model trained at the ceiling's λ
    # where λ changes the task itself (privacy: DP noise costs perplexity), else with each strategy's weak model.
    gap_at_equal_lambda: bool = False
    task_gap_units: str = "accuracy"  # what a difference of task_score is (min_gap is in these units)
    # The metric the gap and PGR compare, where it is not task_metric (privacy: bits per byte, which compares models
    # whose tokenizers differ; its perplexity stays the metric shown). Same direction as task_metric.
    gap_metric: str = ""
    # The advice a run ends with when a model did not learn (report/validity.py): what "a weaker λ" means differs.
    learn_fix: str = "train longer or at another learning rate, or lower λ"
    # ... and when the ceiling is not min_gap above the weak model (a property whose task saturates says so).
    gap_fix: str = ("raise the strong model's learning rate or steps (strong_train.lr, strong_train.epochs), use a "
                    "larger strong model or a weaker weak model")
    # The ``extra.*`` options this property reads, with their defaults: any other extra key is rejected at
    # validation (it would change every cache key and retrain everything for nothing).
    extra_options: dict[str, Any] = {}

    # ---- configuration
    def presets(self) -> dict[str, dict[str, Any]]:
        """Named overrides of ``ExperimentConfig`` (``smoke``, ``quick``, ``paper`` at least)."""
        raise NotImplementedError

    def validate(self, cfg) -> None:
        """Property-specific config checks (raise ``W2SError``)."""

    # ---- data
    def load_splits(self, cfg, seed: int) -> Splits:
        raise NotImplementedError

    def data_files(self, cfg) -> list[tuple[str, str | None, bool]]:
        """Every file ``load_splits`` reads, as (path inside a data folder, download URL or None, required):
        their sizes and hashes go into every stage key (``data/fingerprint.py``), so a changed file retrains."""
        raise NotImplementedError

    # ---- training hooks
    def train_loss(self, forward: Forward, batch: dict[str, list], targets: torch.Tensor,
                   task_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], lam: float) -> torch.Tensor:
        """The training objective for one batch; ``lam`` is this model's regulariser weight (0 = none)."""
        return task_loss(forward(batch), targets)

    def train_context(self, model: torch.nn.Module, lam: float) -> contextlib.AbstractContextManager:
        """Active around the whole training run (e.g. a forward hook that adds embedding noise)."""
        return contextlib.nullcontext()

    # ---- evaluation
    def predict(self, predict: Predict, splits: Splits) -> dict[str, np.ndarray]:
        """Everything the metrics need from one model (stored in the cache, reused by the bootstrap)."""
        return {"prob": predict(splits.test, "text")}

    def test_columns(self, splits: Splits) -> dict[str, np.ndarray]:
        """Ground truth and attributes the metrics need, aligned with ``predict``'s arrays."""
        return {c: np.asarray(splits.test[c]) for c in splits.test.column_names if c != "text"}

    def metrics(self, preds: dict[str, np.ndarray], cols: dict[str, np.ndarray]) -> dict[str, float]:
        raise NotImplementedError

    def trust_value(self, preds: dict[str, np.ndarray], cols: dict[str, np.ndarray]) -> float:
        """The trust metric alone (called per bootstrap resample: override with a fast path if needed)."""
        return self.metrics(preds, cols)[self.trust_metric]

    # ---- validity (report/validity.py): the task metric as the capability gap and PGR measure it
    def task_score(self, value: float) -> float:
        """The task metric on a higher-is-better scale whose differences are the gap (accuracy: as it is)."""
        return float(value) if self.task_higher_is_better else -float(value)

    def task_rows(self, cols: dict[str, np.ndarray]) -> int:
        """How many test rows the task metric is computed on (the bootstrap resamples them)."""
        return len(cols["label"])

    def task_value(self, preds: dict[str, np.ndarray], cols: dict[str, np.ndarray],
                   idx: np.ndarray | None) -> float | None:
        """The task metric recomputed from stored predictions on test rows ``idx`` (None: all of them), for the
        bootstrap CIs; None where the predictions cannot give it (then the seeds are resampled instead)."""
        prob, label = (preds["prob"], cols["label"]) if idx is None else (preds["prob"][idx], cols["label"][idx])
        return float((self.predicted_class(prob) == label).mean())

    @staticmethod
    def predicted_class(prob: np.ndarray) -> np.ndarray:
        """The class a classifier predicts from its probabilities (``task_value``; fairness: class 1 at p >= 0.5)."""
        return prob.argmax(-1)

    def majority_rate(self, cols: dict[str, np.ndarray]) -> float | None:
        """The task metric of always predicting the most frequent class (None: the task has no classes)."""
        return float(np.bincount(np.asarray(cols["label"])).max() / len(cols["label"]))

    def resample(self, preds: dict[str, np.ndarray], cols: dict[str, np.ndarray], idx: np.ndarray):
        """One bootstrap resample of the test rows (all arrays are row-aligned by default)."""
        return {k: v[idx] for k, v in preds.items()}, {k: v[idx] for k, v in cols.items()}
