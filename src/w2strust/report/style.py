"""What every report figure and table shares: role and strategy labels, role colours, and pyplot on the
non-interactive Agg backend (reports are written on machines without a screen)."""

from __future__ import annotations

from ..config.schema import STRATEGIES

ROLE_LABELS = {"weak": "Weak", "wts_naive": "WTS-Naive", "wts_aux": "WTS-Aux-Loss", "strong_ceiling": "Strong ceiling"}
STRATEGY_LABELS = {"no_tft": "No TFT", "weak_tft": "Weak TFT", "weak_wts_tft": "Weak+WTS TFT"}
ROLE_COLOURS = {"weak": "#9e9e9e", "wts_naive": "#64b5f6", "wts_aux": "#1565c0", "strong_ceiling": "#2e7d32"}
ROLE_ORDER = ("weak", "wts_naive", "wts_aux", "strong_ceiling")


def pyplot():
    """matplotlib.pyplot on the Agg backend (imported when a figure is drawn: it costs ~0.5 s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def strategies_in(keys) -> list[str]:
    """The strategies present in ``keys``, in the paper's order."""
    return [s for s in STRATEGIES if s in keys]
