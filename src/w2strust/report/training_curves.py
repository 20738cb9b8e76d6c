"""The report's training-curves figure: one column per strategy; the training loss of every role over
its optimiser steps (one line per seed), and below it, when the property has WTS-Aux-Loss, the
auxiliary-loss weight α and the hardening threshold of the WTS-Aux model over its steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io import save_figure
from .style import ROLE_COLOURS, ROLE_LABELS, STRATEGY_LABELS, pyplot, strategies_in


def _curve(cache: Path, artefact: str) -> list[dict[str, Any]]:
    path = Path(cache) / artefact / "meta.json"
    if not path.exists():
        return []
    return json.loads(path.read_text()).get("train", {}).get("curve", [])


def curves_figure(records: list[dict[str, Any]], cache: Path, path: Path, title: str) -> bool:
    """Write the figure to ``path``; False (and nothing written) when no stage has a curve (older caches)."""
    curves = {id(r): _curve(cache, r["artefact"]) for r in records}
    if not any(curves.values()):
        return False
    plt = pyplot()
    strategies = strategies_in({r["strategy"] for r in records})
    aux = [r for r in records if r["role"] == "wts_aux" and any(p.get("alpha") is not None for p in curves[id(r)])]
    rows = 2 if aux else 1
    fig, axes = plt.subplots(rows, len(strategies), figsize=(4.6 * len(strategies), 3.3 * rows), squeeze=False,
                             sharey="row")
    for j, strategy in enumerate(strategies):
        ax = axes[0][j]
        labelled: set[str] = set()
        for r in records:
            points = curves[id(r)]
            if r["strategy"] != strategy or not points:
                continue
            ax.plot([p["step"] for p in points], [p["loss"] for p in points], color=ROLE_COLOURS[r["role"]],
                    lw=1.2, alpha=0.85, label=None if r["role"] in labelled else ROLE_LABELS[r["role"]])
            labelled.add(r["role"])
        ax.set_title(STRATEGY_LABELS[strategy], fontsize=10)
        ax.set_xlabel("optimiser step")
        if j == 0:
            ax.set_ylabel("training loss")
            ax.legend(fontsize=7)
        if aux:
            ax_a = axes[1][j]
            ax_t = ax_a.twinx()
            for k, r in enumerate(r for r in aux if r["strategy"] == strategy):
                points = curves[id(r)]
                steps = [p["step"] for p in points]
                ax_a.plot(steps, [p["alpha"] for p in points], color=ROLE_COLOURS["wts_aux"], lw=1.2,
                          label="α" if k == 0 else None)
                ax_t.plot(steps, [p["threshold"] if p["threshold"] is not None else float("nan") for p in points],
                          color="#e65100", lw=1.0, ls="--", label="threshold" if k == 0 else None)
            ax_a.set_xlabel("optimiser step (WTS-Aux-Loss)")
            ax_a.set_ylabel("α")
            ax_t.set_ylabel("hardening threshold p(y=1)")
            if j == 0:
                handles = ax_a.get_legend_handles_labels()[0] + ax_t.get_legend_handles_labels()[0]
                ax_a.legend(handles=handles, fontsize=7, loc="lower right")
    fig.suptitle(f"Training curves: {title}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return True
