"""Stop a stage the moment a number goes non-finite: a NaN scored as class 0 is a wrong result, not a result.

A diverged model (learning rate too high, λ too large) predicts NaN; ``argmax`` then turns every NaN row
into class 0 and the metrics look normal (|DPD| = 0, "collapsed"). These checks raise a
``NonFiniteError`` (a ``W2SError``: one line, exit code 2) naming the stage, the step or array, and the
likely cause, so nothing non-finite is ever cached or reported.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from ..errors import W2SError


class NonFiniteError(W2SError):
    """A loss, prediction or metric became NaN or infinite."""


def check_loss(value: float, step: int, total: int, stage: str, lr: float, lam: float,
               dp_epsilon: bool = False) -> None:
    """Raise if the training loss of ``step`` (1-based) is not finite. ``dp_epsilon``: λ is a DP-SGD ε, where
    a *smaller* value (more noise) is the risky direction."""
    if not math.isfinite(value):
        lam_text, cause, fix = ((f"ε={lam:g}", "the learning rate is too high or ε too small (more DP noise)",
                                 "lower the stage's *_train.lr or raise its lambda_* (ε)") if dp_epsilon else
                                (f"λ={lam:g}", "the learning rate is too high or λ too large",
                                 "lower the stage's *_train.lr or its lambda_*"))
        raise NonFiniteError(f"{stage}: the training loss became {value} at step {step}/{total} (lr={lr:g}, "
                             f"{lam_text}); likely cause: {cause}; {fix} and run again (finished stages stay cached)")


def check_arrays(stage: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Raise if any float array (predictions, weak labels) holds a NaN or an infinity."""
    for name, a in arrays.items():
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).sum())
            raise NonFiniteError(f"{stage}: {bad} of {a.size} values of its {name} are NaN or infinite: the model "
                                 f"diverged; likely cause: the learning rate is too high or λ too large; lower the "
                                 f"stage's *_train.lr or its lambda_* and run again")


def check_metrics(stage: str, metrics: Mapping[str, float], may_be_missing: Iterable[str] = ()) -> None:
    """Raise if a metric is not finite, except those a property declares as possibly unmeasurable (NaN = none)."""
    optional = set(may_be_missing)
    for name, v in metrics.items():
        if name not in optional and isinstance(v, float) and not math.isfinite(v):
            raise NonFiniteError(f"{stage}: metric {name} is {v}: the model's outputs are degenerate; likely cause: "
                                 f"the learning rate is too high or λ too large; lower them and run again")
