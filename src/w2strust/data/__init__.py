"""Dataset loaders (one module per dataset) and the common split into D_W / D_WTS / D_T.

Every loader returns Hugging Face ``datasets.Dataset`` objects with a ``text`` and an integer
``label`` column, plus whatever columns its property needs (``group`` for fairness, ...).
"""

from .download import locate
from .splits import Splits, split_pool, subsample

__all__ = ["Splits", "locate", "split_pool", "subsample"]
