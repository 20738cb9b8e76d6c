"""The rule that picks a λ from a trade-off curve (the strong ceiling's under ``lambda_ceiling: auto``, and the λ a
``w2strust sweep`` suggests), stated so that it can be reproduced.

Among the swept λ, take the most trustworthy one whose task metric is at most ``max_drop`` worse than the
reference model's (default 0.015 = 1.5 accuracy points, the cost the paper reports for its chosen λ). The
reference is the unregularised model (λ = 0, which every property reads as "no regulariser", privacy's ε
included) when it is swept, else the least regularised λ: the smallest, or for privacy, whose λ is ε (a larger ε
adds less noise), the largest. "Worse" follows the property's ``task_higher_is_better``
(privacy: perplexity, where ``max_drop`` is in perplexity units and should be set accordingly).
"""

from __future__ import annotations

from typing import Any

import numpy as np

RULE = ("the most trustworthy λ whose {task} is at most {max_drop:g} worse than the reference's (λ = 0, else the "
        "{least} λ); mean over seeds")


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
            "rule": RULE.format(max_drop=max_drop, task=prop.task_metric,
                                least="smallest" if prop.larger_lambda_regularises_more else "largest"),
            "points": points,
            "suggested_lambda": suggest(points, prop, max_drop)}


def suggest(points: list[dict[str, Any]], prop, max_drop: float) -> float:
    """The most trustworthy λ whose task metric is at most ``max_drop`` worse than the reference's."""
    # λ = 0 (no regulariser) when swept, else the least regularised: the smallest λ, the largest ε (privacy)
    lams = [p["lambda"] for p in points]
    ref = 0.0 if 0.0 in lams else min(lams) if prop.larger_lambda_regularises_more else max(lams)
    base = next(p for p in points if p["lambda"] == ref)[prop.task_metric]["mean"]
    worse = 1.0 if prop.task_higher_is_better else -1.0
    ok = [p for p in points if worse * (base - p[prop.task_metric]["mean"]) <= max_drop + 1e-12]
    sign = -1.0 if prop.higher_is_better else 1.0
    return min(ok, key=lambda p: (sign * p[prop.trust_metric]["mean"], p["lambda"]))["lambda"]
