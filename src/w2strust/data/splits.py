"""D_W (weak training), D_WTS (held out, to be weak-labelled) and D_T (test): disjoint by construction."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from datasets import Dataset

from ..errors import W2SError


@dataclass
class Splits:
    weak: Dataset  # D_W: ground truth for the weak model (and, with D_WTS, for the strong ceiling)
    wts: Dataset  # D_WTS: labelled by the weak model for the WTS models
    test: Dataset  # D_T: every model is evaluated here
    extra: dict[str, Dataset] = field(default_factory=dict)  # property-specific evaluation sets


def split_pool(pool: Dataset, n_weak: int, n_wts: int, seed: int) -> tuple[Dataset, Dataset]:
    """Two disjoint random subsets of ``pool`` (row-level: no row index is in both)."""
    if n_weak + n_wts > len(pool):
        raise W2SError(f"asked for n_weak={n_weak} + n_wts={n_wts} rows but the training pool has only "
                       f"{len(pool)}; lower data.n_weak / data.n_wts")
    order = np.random.default_rng(seed).permutation(len(pool))
    return pool.select(order[:n_weak]), pool.select(order[n_weak:n_weak + n_wts])


def subsample(ds: Dataset, n: int, seed: int) -> Dataset:
    """``n`` random rows (all rows, in order, when n is 0 or at least the size)."""
    if n <= 0 or n >= len(ds):
        return ds
    return ds.select(np.sort(np.random.default_rng(seed).permutation(len(ds))[:n]))
