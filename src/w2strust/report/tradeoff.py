"""The λ trade-off figure (trust against task metric, one point per λ): ``tradeoff.png`` of a sweep and
``ceiling-tradeoff.png`` of a run whose ceiling's λ was chosen by rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import save_figure
from .style import pyplot


def tradeoff_figure(result: dict[str, Any], path: Path) -> None:
    """The λ trade-off curve of a sweep or of lambda_ceiling: auto (paper Figure A1), the suggested λ starred."""
    plt = pyplot()
    trust, task = result["trust_metric"], result["task_metric"]
    pts = result["points"]
    fig, ax = plt.subplots(figsize=(5, 3.8))
    xs = [p[task]["mean"] for p in pts]
    ys = [p[trust]["mean"] for p in pts]
    ax.errorbar(xs, ys, xerr=[p[task]["std"] for p in pts], yerr=[p[trust]["std"] for p in pts], fmt="o-",
                capsize=3)
    for p, x, y in zip(pts, xs, ys, strict=True):
        star = " *" if p["lambda"] == result["suggested_lambda"] else ""
        ax.annotate(f"λ={p['lambda']:g}{star}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(task)
    ax.set_ylabel(f"{trust} ({'higher' if result['higher_is_better'] else 'lower'} is more trustworthy)")
    ax.set_title(f"{result['property']}: {result['role']} λ trade-off (* suggested)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
