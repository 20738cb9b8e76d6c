"""λ sweeps of one role (paper Figure A1): the trust/performance trade-off, and the λ it suggests.

The paper chooses the strong ceiling's λ (and the weak model's) from such a curve; the rule that suggests one
is stated in ``ceiling_rule.py``. Every swept model is an ordinary pipeline stage, so a sweep shares its cache
with `w2strust run` (``--cache``) and resumes after a crash.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config.build import validate
from ..config.schema import ExperimentConfig
from ..errors import W2SError
from ..io import atomic_write_json
from ..report.tradeoff import tradeoff_figure
from . import tracking
from .ceiling_rule import trade_off
from .plan import Runner

SWEEP_ROLES = ("weak", "strong_ceiling")


def run_sweep(cfg: ExperimentConfig, role: str, lambdas: list[float], out: Path, cache: Path | None = None,
              max_drop: float = 0.015, options=None) -> dict[str, Any]:
    check_lambdas(cfg, role, lambdas)
    tracker = tracking.open_tracker(cfg.log, Path(out))  # before training: a missing package fails at once
    runner = Runner(cfg, out, cache, options)
    build = runner.planner.weak if role == "weak" else runner.planner.ceiling
    stages = [(lam, build(seed, lam)) for lam in lambdas for seed in cfg.seeds]
    runner.execute_all([s for _, s in stages], desc=f"{cfg.property} λ sweep ({role})")
    metrics = {lam: [runner.load_meta(s)["metrics"] for lam_s, s in stages if lam_s == lam] for lam in lambdas}
    if tracker is not None:  # one tracked run per swept model: sweep-<role>/lambda=<λ>/seed<k>
        tracker.log_run(cfg, [{"strategy": f"sweep-{role}", "role": f"lambda={lam:g}", "seed": s.seed,
                               "artefact": s.dirname, "metrics": runner.load_meta(s)["metrics"]}
                              for lam, s in stages], runner.load_meta)
    result = trade_off(runner.planner.prop, role, metrics, max_drop)
    atomic_write_json(Path(out) / "sweep.json", result)
    tradeoff_figure(result, Path(out) / "tradeoff.png")
    return result


def check_lambdas(cfg: ExperimentConfig, role: str, lambdas: list[float]) -> None:
    """The property's checks of λ (adversarial: a weight in [0, 1]; privacy: whole epochs under DP) on every swept λ,
    which the config's own validation never saw."""
    name = "lambda_weak" if role == "weak" else "lambda_ceiling"
    for lam in lambdas:
        try:
            validate(replace(cfg, **{name: float(lam)}))
        except W2SError as e:
            raise W2SError(f"--lambdas {lam:g} cannot be swept for {cfg.property}: {e}") from None
