"""The training curve of one stage: the mean loss (and any extra values) every few optimiser steps.

Both training loops (classifier and causal LM) feed it one value per step; it keeps at most about
``max_points`` points so that a stage's meta.json stays small however long the training is. The
points are what the report's training-curves figure and the optional TensorBoard / W&B logging show.
"""

from __future__ import annotations

import math
from typing import Any


class TrainingCurve:
    def __init__(self, total_steps: int, max_points: int = 100):
        self.every = max(1, math.ceil(total_steps / max_points))  # steps per logged point
        self.total_steps = total_steps
        self.points: list[dict[str, Any]] = []
        self._window: list[float] = []

    def add(self, step: int, loss: float, lr: float | None = None, **extra: Any) -> None:
        """Record step ``step`` (1-based); every ``every`` steps and at the last one, append a point with the
        mean loss over the steps since the previous point, the learning rate and ``extra`` at this step."""
        self._window.append(float(loss))
        if step % self.every == 0 or step == self.total_steps:
            point = {"step": step, "loss": sum(self._window) / len(self._window)}
            if lr is not None:
                point["lr"] = float(lr)
            point.update(extra)
            self.points.append(point)
            self._window = []
