"""Optional experiment tracking (``--log tensorboard|wandb``): every model's training curve and test metrics.

The curves are read back from the stages' meta.json once the run's stages are done, in the main
process: so tracking works the same whichever executor trained a stage, and a resumed run logs the
cached stages too. One tracked run per (strategy, role, seed), named ``<strategy>/<role>/seed<k>``.
Neither package is a dependency of w2strust: ``pip install 'w2strust[tensorboard]'`` or ``[wandb]``.
"""

from __future__ import annotations

import netrc
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import W2SError

INSTALL = {"tensorboard": "pip install 'w2strust[tensorboard]' (or pip install tensorboard)",
           "wandb": "pip install 'w2strust[wandb]' (or pip install wandb)"}


def open_tracker(kind: str, out: Path):
    """The tracker for ``kind`` (none | tensorboard | wandb), or None; fails at once if its package is missing."""
    if kind in ("none", "", None):
        return None
    try:
        if kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

            return TensorBoardTracker(Path(out), SummaryWriter)
        if kind == "wandb":
            import wandb

            return WandbTracker(Path(out), wandb)
    except ImportError as e:
        raise W2SError(f"--log {kind} needs the {kind} package, which is not installed: {INSTALL[kind]}") from e
    raise W2SError(f"unknown tracker '{kind}'; choose none, tensorboard or wandb")


def _run_name(record: dict[str, Any]) -> str:
    return f"{record['strategy']}/{record['role']}/seed{record['seed']}"


def _scalars(point: dict[str, Any]) -> dict[str, float]:
    """A curve point's numeric values (α / threshold are None before the auxiliary loss has any)."""
    return {k: float(v) for k, v in point.items() if k != "step" and isinstance(v, int | float)}


class TensorBoardTracker:
    """Event files in ``<out>/tensorboard/<strategy>/<role>/seed<k>/``; ``tensorboard --logdir <out>/tensorboard``."""

    def __init__(self, out: Path, writer_cls):
        self.root = out / "tensorboard"
        self.writer_cls = writer_cls

    def log_run(self, cfg, records: list[dict[str, Any]], load_meta: Callable[[str], dict]) -> None:
        for r in records:
            meta = load_meta(r["artefact"])
            log_dir = self.root / _run_name(r)
            shutil.rmtree(log_dir, ignore_errors=True)  # rewritten from the cache: a resumed run has no duplicates
            writer = self.writer_cls(log_dir=str(log_dir))
            try:
                curve = meta.get("train", {}).get("curve", [])
                for point in curve:
                    for key, value in _scalars(point).items():
                        writer.add_scalar(f"train/{key}", value, point["step"])
                last = curve[-1]["step"] if curve else 0
                for key, value in r["metrics"].items():
                    if isinstance(value, int | float):
                        writer.add_scalar(f"test/{key}", value, last)
                writer.add_text("stage", f"`{r['artefact']}` ({cfg.property}, weak `{cfg.weak_model}` → strong "
                                         f"`{cfg.strong_model}`)", last)
            finally:
                writer.close()


class WandbTracker:
    """One W&B run per model, grouped by the run folder. Offline (files under ``<out>/wandb``; ``wandb sync`` uploads
    them) unless the user configured W&B: WANDB_MODE or WANDB_API_KEY set, or a `wandb login` in ~/.netrc."""

    def __init__(self, out: Path, wandb):
        self.out = out
        self.wandb = wandb

    @staticmethod
    def mode() -> str | None:
        if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
            return None  # the user's own setting
        try:
            if netrc.netrc().authenticators("api.wandb.ai"):
                return None
        except (OSError, netrc.NetrcParseError):
            pass
        return "offline"

    def log_run(self, cfg, records: list[dict[str, Any]], load_meta: Callable[[str], dict]) -> None:
        for r in records:
            meta = load_meta(r["artefact"])
            run = self.wandb.init(project=os.environ.get("WANDB_PROJECT", "w2strust"), group=str(self.out.resolve()),
                                  name=f"{cfg.property}/{_run_name(r)}", dir=str(self.out), mode=self.mode(),
                                  config={**cfg.to_dict(), "strategy": r["strategy"], "role": r["role"],
                                          "seed": r["seed"], "artefact": r["artefact"]})
            try:
                for point in meta.get("train", {}).get("curve", []):
                    run.log({f"train/{k}": v for k, v in _scalars(point).items()}, step=point["step"])
                run.summary.update({f"test/{k}": v for k, v in r["metrics"].items()})
            finally:
                run.finish()
