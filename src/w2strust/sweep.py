"""λ sweeps of one role (paper Figure A1): the trust/performance trade-off, and the λ it suggests.

The paper chooses the strong ceiling's λ (and the weak model's) from such a curve. The rule used
here, stated so that it can be reproduced: among the swept λ, take the most trustworthy one whose
task metric is at most ``max_drop`` worse than the reference model's (default 0.015 = 1.5 accuracy
points, the cost the paper reports for its chosen λ). The reference is the unregularised model
(λ = 0, which every property reads as "no regulariser", privacy's ε included) when it is swept, else
the smallest λ. "Worse" follows the property's ``task_higher_is_better`` (privacy: perplexity, where
``max_drop`` is in perplexity units and should be set accordingly). Every swept model is an ordinary pipeline
stage, so a sweep shares its cache with `w2strust run` (``--cache``) and resumes after a crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import properties, tracking
from .config import ExperimentConfig
from .io import atomic_write_json, save_figure
from .pipeline import Runner, ceiling_stage, weak_stage

SWEEP_ROLES = ("weak", "strong_ceiling")
RULE = ("the most trustworthy λ whose {task} is at most {max_drop:g} worse than the reference's (λ = 0, else the "
        "smallest λ); mean over seeds")


def run_sweep(cfg: ExperimentConfig, role: str, lambdas: list[float], out: Path, cache: Path | None = None,
              max_drop: float = 0.015, options=None) -> dict[str, Any]:
    prop = properties.get(cfg.property)
    tracker = tracking.open_tracker(cfg.log, Path(out))  # before training: a missing package fails at once
    runner = Runner(cfg, out, cache, options)
    build = weak_stage if role == "weak" else ceiling_stage
    threads = runner.options.stage_threads()
    stages = [(lam, build(cfg, seed, lam, threads)) for lam in lambdas for seed in cfg.seeds]
    runner.execute_all([s for _, s in stages], desc=f"{cfg.property} λ sweep ({role})")
    metrics = {lam: [runner.load_meta(s)["metrics"] for lam_s, s in stages if lam_s == lam] for lam in lambdas}
    if tracker is not None:  # one tracked run per swept model: sweep-<role>/lambda=<λ>/seed<k>
        tracker.log_run(cfg, [{"strategy": f"sweep-{role}", "role": f"lambda={lam:g}", "seed": s.seed,
                               "artefact": s.dirname, "metrics": runner.load_meta(s)["metrics"]}
                              for lam, s in stages], runner.load_meta)
    result = trade_off(prop, role, metrics, max_drop)
    atomic_write_json(Path(out) / "sweep.json", result)
    figure(result, Path(out) / "tradeoff.png")
    return result


def trade_off(prop, role: str, metrics: dict[float, list[dict[str, float]]], max_drop: float) -> dict[str, Any]:
    """The curve (mean ± std over seeds of the trust and task metric per λ) and the λ the rule picks.
    ``metrics`` maps each λ to its models' test metrics, one per seed. Also what lambda_ceiling: auto uses."""
    points = []
    for lam, per_seed in metrics.items():
        point: dict[str, Any] = {"lambda": lam}
        for m in (prop.trust_metric, prop.task_metric):
            vals = np.asarray([x[m] for x in per_seed], dtype=float)
            point[m] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                        "n": len(vals)}
        points.append(point)
    return {"property": prop.name, "role": role, "trust_metric": prop.trust_metric,
            "higher_is_better": prop.higher_is_better, "task_metric": prop.task_metric, "max_drop": max_drop,
            "rule": RULE.format(max_drop=max_drop, task=prop.task_metric), "points": points,
            "suggested_lambda": suggest(points, prop, max_drop)}


def suggest(points: list[dict[str, Any]], prop, max_drop: float) -> float:
    """The most trustworthy λ whose task metric is at most ``max_drop`` worse than the reference's."""
    base = min(points, key=lambda p: p["lambda"])[prop.task_metric]["mean"]  # λ = 0 when swept
    worse = 1.0 if prop.task_higher_is_better else -1.0
    ok = [p for p in points if worse * (base - p[prop.task_metric]["mean"]) <= max_drop + 1e-12]
    sign = -1.0 if prop.higher_is_better else 1.0
    return min(ok, key=lambda p: (sign * p[prop.trust_metric]["mean"], p["lambda"]))["lambda"]


def figure(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
