"""Is a run a weak-to-strong experiment at all? The gates a Table 1 verdict needs, and the gap each student recovers.

Per strategy (paper §4, Burns et al.):
- **weak beats majority**: the weak model's task metric is above the majority-class rate of the test set;
- **capability gap**: the strong ceiling beats the weak model on the task metric by at least ``min_gap`` on every
  seed, and the bootstrap CI of the gap (mean over seeds) lies above 0. For a property whose ceiling and weak model
  differ in λ in a way that changes the task itself (privacy: DP noise costs perplexity), the ceiling is compared
  with the weak model trained at the ceiling's λ ("at equal ε");
- **students learned**: every WTS model's training loss fell (by ``LOSS_DROP`` of its first logged value), it is not
  collapsed to one class, and it beats the majority class;
- **weak model and ceiling learned**: their training loss fell too. Beating the majority class or the weak model
  does not show it where a pretrained model is good at the task before any training (privacy's language models: a
  DP-SGD model whose loss never fell is the pretrained model plus noise, and its "privacy" is not the method's);
- **PGR** = (student − weak) / (ceiling − weak) of the task metric, and the same ratio of the trust metric ("trust
  gap recovered"), each with a bootstrap CI, computed only where the gap gate passes (and, for a gap at equal λ,
  only for students trained at the ceiling's λ); a ratio whose denominator's CI includes 0 is ``undefined``, not a
  number; a student above its ceiling on the task metric is flagged.
A strategy that fails a gate is not a weak-to-strong setting: its Table 1 cell reads ``invalid (<reason>)`` and is
counted apart (``table1.py``).

CIs are percentile intervals of a paired bootstrap over test rows (the same resampled rows for every model of a
seed, metrics averaged over seeds), like the WTS-trust test; where a property cannot recompute its task metric from
stored predictions (privacy stages stored before their per-e-mail test losses were), the seeds are resampled
instead. The gap compares the property's ``gap_metric`` (default: its task metric) through its ``task_score``
(accuracy as it is; privacy's bits per byte negated, lower being better).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..config.schema import STRATEGIES

LOSS_DROP = 0.05  # a model "learned" when its training loss fell by at least 5% (see _loss_problem)
NEAR_CHANCE = 0.9  # weak labels whose mean entropy is at least this share of the uniform labels' are "near chance"
CI = (2.5, 97.5)  # percentiles of the bootstrap distribution: a 95% interval
# A gap of exactly min_gap passes "at least min_gap": accuracies are shares of rows, and their difference in floating
# point can land a few ulps under the exact value (0.83 - 0.80 = 0.0299999...). Task scores move in steps far larger
# than this (1 row in 10^7), so the tolerance hides rounding only.
GAP_TOL = 1e-9
STUDENTS = ("wts_naive", "wts_aux")


def ratio(student: float, weak: float, ceiling: float) -> float:
    """(student − weak) / (ceiling − weak): 0 = no better than the weak model, 1 = as good as the ceiling. The same
    formula serves lower-is-better metrics (numerator and denominator change sign together)."""
    gap = ceiling - weak
    return float((student - weak) / gap) if gap != 0 else float("nan")


def interval(samples: list[float] | np.ndarray) -> list[float] | None:
    a = np.asarray(samples, dtype=float)
    a = a[np.isfinite(a)]
    return [float(np.percentile(a, CI[0])), float(np.percentile(a, CI[1]))] if len(a) else None


def _stat(value: float, ci: list[float] | None) -> dict[str, Any]:
    return {"value": float(value), "ci": ci}


class Evidence:
    """Per seed, what the gates read: each role's artefact (from the records), its task score and trust value on the
    test rows, and bootstrap replicates of both (the same resampled rows for every role of a seed)."""

    def __init__(self, prop, by_role_seed: dict[tuple[str, int], dict[str, Any]], load_preds: Callable,
                 test_columns: Callable, n_bootstrap: int, seed: int = 0):
        self.prop, self.recs = prop, by_role_seed
        self.seeds = sorted({s for _, s in by_role_seed})
        self.load_preds, self.cols = load_preds, test_columns
        self.n = max(1, n_bootstrap)
        self.rng_seed = seed
        self._idx: dict[tuple[int, str], np.ndarray] = {}

    def task_score(self, role: str, seed: int) -> float:
        return self.prop.task_score(self.recs[(role, seed)]["metrics"][gap_metric(self.prop)])

    def trust(self, role: str, seed: int) -> float:
        return float(self.recs[(role, seed)]["metrics"][self.prop.trust_metric])

    def rows(self, seed: int, which: str) -> np.ndarray:
        """Bootstrap row indices (n_bootstrap x rows) of a seed's task rows or trust rows, drawn once."""
        if (seed, which) not in self._idx:
            cols = self.cols(seed)
            n_rows = self.prop.task_rows(cols) if which == "task" else len(next(iter(cols.values())))
            rng = np.random.default_rng([self.rng_seed, seed, 0 if which == "task" else 1])
            self._idx[(seed, which)] = rng.integers(0, n_rows, (self.n, n_rows))
        return self._idx[(seed, which)]

    def task_replicates(self, role: str) -> np.ndarray | None:
        """Mean over seeds of the task score in each bootstrap replicate (None: not recomputable from predictions)."""
        per_seed = []
        for s in self.seeds:
            preds, cols = self.load_preds(self.recs[(role, s)]["artefact"]), self.cols(s)
            if self.prop.task_value(preds, cols, None) is None:
                return None
            per_seed.append([self.prop.task_score(self.prop.task_value(preds, cols, idx))
                             for idx in self.rows(s, "task")])
        return np.mean(per_seed, axis=0)

    def trust_replicates(self, role: str) -> np.ndarray:
        per_seed = []
        for s in self.seeds:
            preds, cols = self.load_preds(self.recs[(role, s)]["artefact"]), self.cols(s)
            per_seed.append([self.prop.trust_value(*self.prop.resample(preds, cols, idx))
                             for idx in self.rows(s, "trust")])
        return np.mean(per_seed, axis=0)

    def paired_replicates(self, roles: tuple[str, ...], metric: str) -> tuple[dict[str, np.ndarray], str]:
        """Bootstrap replicates of each role's task score (``task``) or trust value (``trust``), paired across roles,
        and what was resampled: the same test rows of each seed, or, where the task metric cannot be recomputed from
        predictions (privacy stages stored without per-e-mail test losses), the same seeds."""
        if metric == "trust":
            return {r: self.trust_replicates(r) for r in roles}, "test rows"
        reps = {r: self.task_replicates(r) for r in roles}
        if all(v is not None for v in reps.values()):
            return reps, "test rows"
        return {r: self.seed_replicates({s: self.task_score(r, s) for s in self.seeds}) for r in roles}, "seeds"

    def seed_replicates(self, values: dict[int, float]) -> np.ndarray:
        """Means over resampled seeds: the CI when the task metric cannot be recomputed from predictions."""
        v = np.asarray([values[s] for s in self.seeds])
        rng = np.random.default_rng([self.rng_seed, 7])
        return v[rng.integers(0, len(v), (self.n, len(v)))].mean(1)


def check(prop, records: list[dict[str, Any]], load_preds: Callable[[str], dict[str, np.ndarray]],
          load_meta: Callable[[str], dict[str, Any]], test_columns: Callable[[int], dict[str, np.ndarray]],
          collapsed: list[dict[str, Any]], min_gap: float, n_bootstrap: int) -> dict[str, Any]:
    """The ``validity`` section of summary.json (module docstring)."""
    out: dict[str, Any] = {"min_gap": min_gap, "task_metric": gap_metric(prop), "gap_units": prop.task_gap_units,
                           "loss_drop": LOSS_DROP, "strategies": {}}
    if any(gap_metric(prop) not in r["metrics"] for r in records):
        out.update(valid=False, majority_rate={}, line=f"validity: not checked (the records hold no "
                                                       f"{gap_metric(prop)}: made by an older w2strust; rerun the "
                                                       f"run to measure the gap)")
        return out
    collapsed_at = {(c["strategy"], c["role"], c["seed"]) for c in collapsed}
    weak_at = {(float(r["lambda_weak"]), r["seed"]): r for r in records if r["role"] == "weak"}
    cols: dict[int, dict[str, np.ndarray]] = {}

    def columns(seed: int) -> dict[str, np.ndarray]:
        if seed not in cols:
            cols[seed] = test_columns(seed)
        return cols[seed]

    for strategy in [s for s in STRATEGIES if any(r["strategy"] == s for r in records)]:
        recs = {(r["role"], r["seed"]): r for r in records if r["strategy"] == strategy}
        seeds = sorted({s for _, s in recs})
        if any((role, s) not in recs for role in prop.roles for s in seeds):
            continue
        if prop.gap_at_equal_lambda:  # the weak model trained at the ceiling's λ, from any strategy
            for s in seeds:
                match = weak_at.get((float(recs[("strong_ceiling", s)]["lambda_ceiling"]), s))
                if match is not None:
                    recs[(GAP_WEAK, s)] = match
        ev = Evidence(prop, recs, load_preds, columns, n_bootstrap)
        out["strategies"][strategy] = _strategy(prop, ev, collapsed_at, strategy, load_meta, min_gap)
    out["majority_rate"] = {str(s): prop.majority_rate(c) for s, c in sorted(cols.items())}
    verdicts = out["strategies"].values()
    out["valid"] = bool(verdicts) and all(v["valid"] for v in verdicts)
    out["line"] = summary_line(out, prop.learn_fix, prop.gap_fix)
    return out


def gap_metric(prop) -> str:
    """The metric the capability gap and PGR compare (the property's ``gap_metric``, else its task metric)."""
    return prop.gap_metric or prop.task_metric


GAP_WEAK = "weak_at_ceiling_lambda"  # the weak model the gap compares with, where it is not the strategy's own


def _strategy(prop, ev: Evidence, collapsed_at, strategy: str, load_meta, min_gap: float) -> dict[str, Any]:
    seeds, reasons, res = ev.seeds, [], {}
    majority = {s: prop.majority_rate(ev.cols(s)) for s in seeds}
    if all(m is not None for m in majority.values()):  # the weak model against the majority class
        floor = {s: prop.task_score(m) for s, m in majority.items()}
        above = {s: ev.task_score("weak", s) - floor[s] for s in seeds}
        reps = ev.task_replicates("weak")
        ci = interval(reps - np.mean(list(floor.values()))) if reps is not None else None
        ok = all(v > 0 for v in above.values()) and (ci is None or ci[0] > 0)
        res["weak_beats_majority"] = {"passes": ok, "per_seed": {str(s): v for s, v in above.items()},
                                      **_stat(np.mean(list(above.values())), ci)}
        if not ok:
            reasons.append("weak model not above the majority class")
    weak_role = GAP_WEAK if prop.gap_at_equal_lambda else "weak"
    if any((weak_role, s) not in ev.recs for s in seeds):
        lam = ev.recs[("strong_ceiling", seeds[0])]["lambda_ceiling"]
        res["gap"] = {"passes": False, "value": None, "ci": None, "per_seed": {},
                      "note": f"no weak model trained at the ceiling's λ = {lam:g}: add weak_tft with "
                              f"lambda_weak = lambda_ceiling to measure the gap at equal λ"}
        reasons.append(f"capability gap not measurable at equal λ ({lam:g})")
        gap_ok = False
    else:  # the capability gap
        per_seed = {s: ev.task_score("strong_ceiling", s) - ev.task_score(weak_role, s) for s in seeds}
        reps, over = ev.paired_replicates(("strong_ceiling", weak_role), "task")
        gap_ci = interval(reps["strong_ceiling"] - reps[weak_role])
        worst = min(per_seed.values())
        gap_ok = worst >= min_gap - GAP_TOL and gap_ci is not None and gap_ci[0] > 0
        res["gap"] = {"passes": gap_ok, "per_seed": {str(s): v for s, v in per_seed.items()},
                      **_stat(np.mean(list(per_seed.values())), gap_ci),
                      "ci_over": over,
                      "weak_lambda": float(ev.recs[(weak_role, seeds[0])]["lambda_weak"])}
        if not gap_ok:
            # 4 digits: a gap of 0.0297 printed as +0.030 would read as passing a min_gap of 0.03
            reasons.append(f"ceiling − weak gap {worst:+.4f} < min_gap {min_gap:g}" if worst < min_gap - GAP_TOL
                           else f"the gap's CI {gap_ci[0]:+.3f}..{gap_ci[1]:+.3f} includes 0" if gap_ci
                           else "the gap has no CI")
    res["teachers"] = {}  # the weak model(s) and the ceiling: did their training loss fall?
    for role in dict.fromkeys(("weak", weak_role, "strong_ceiling")):
        if any((role, s) not in ev.recs for s in seeds) or (role == GAP_WEAK and all(
                ev.recs[(role, s)]["artefact"] == ev.recs[("weak", s)]["artefact"] for s in seeds)):
            continue  # (the weak model at the ceiling's λ is often this strategy's own weak model: checked once)
        problems = [p for s in seeds if (p := _loss_problem(load_meta, ev.recs[(role, s)]["artefact"], s))]
        res["teachers"][role] = {"learned": not problems, "problems": problems}
        if problems:
            label = "the weak model at the ceiling's λ" if role == GAP_WEAK else role
            reasons.append(f"{label} did not learn ({problems[0]})")
    res["students"] = {}
    for role in [r for r in STUDENTS if r in prop.roles]:
        problems = []
        for s in seeds:
            if p := _loss_problem(load_meta, ev.recs[(role, s)]["artefact"], s):
                problems.append(p + _near_chance_labels(load_meta, ev.recs[("weak", s)]["artefact"]))
            if (strategy, role, s) in collapsed_at:
                problems.append(f"seed {s}: collapsed to one class")
            if majority[s] is not None and not ev.task_score(role, s) > prop.task_score(majority[s]):
                problems.append(f"seed {s}: not above the majority class")
        st: dict[str, Any] = {"learned": not problems, "problems": problems}
        if problems:
            reasons.append(f"{role} did not learn ({problems[0]})")
        unequal = _unequal_lambda(prop, ev, role)
        if gap_ok and unequal:
            st["not_compared"] = unequal
        elif gap_ok:
            st["pgr"] = _recovered(ev, role, weak_role, "task")
            st["trust_gap_recovered"] = _recovered(ev, role, weak_role, "trust")
            minus = float(np.mean([ev.task_score(role, s) - ev.task_score("strong_ceiling", s) for s in seeds]))
            st["above_ceiling"], st["minus_ceiling"] = minus > 0, minus
        res["students"][role] = st
    res["valid"], res["reasons"] = not reasons, reasons
    return res


def _loss_problem(load_meta, artefact: str, seed: int) -> str | None:
    """Why a stage's model did not learn: its training loss did not fall by LOSS_DROP. Measured on all its training
    rows before and after training where the trainer logs that (causal LMs: a few dozen e-mails, whose batch losses
    differ by more than training moves them), else from the curve: the mean of the last logged batch losses
    against the first. A stage that recorded neither (both trainers always do) cannot show that it learned: that is a
    problem too, not a pass."""
    train = load_meta(artefact).get("train", {})
    if train.get("train_loss_before") is not None and train.get("train_loss_after") is not None:
        first, final = train["train_loss_before"], train["train_loss_after"]
    else:
        curve, final = train.get("curve") or [], train.get("final_loss")
        if not curve or final is None:
            return f"seed {seed}: no training loss recorded in its meta.json (cannot tell whether it learned)"
        first = curve[0]["loss"]
    if not final <= (1 - LOSS_DROP) * first:
        return f"seed {seed}: its training loss did not fall ({first:.3f} -> {final:.3f})"
    return None


def _near_chance_labels(load_meta, weak_artefact: str) -> str:
    """Why a student's loss may not fall although it trained as asked: its teacher's soft labels are near uniform, and
    a cross-entropy on them cannot go below their entropy (seen: a minilm-l1 weak model at 60.7% accuracy whose labels
    had a mean entropy of 0.692 nats, ln 2 = 0.693). The fix is then the weak model's training, not the student's."""
    meta = load_meta(weak_artefact)
    h, h_max = meta.get("weak_label_entropy"), meta.get("weak_label_max_entropy")
    if h is None or not h_max or h < NEAR_CHANCE * h_max:
        return ""
    return (f"; its weak labels are near chance (mean entropy {h:.3f} of at most {h_max:.3f} nats, a floor for its "
            f"loss): train the weak model longer or at another learning rate")


def _unequal_lambda(prop, ev: Evidence, role: str) -> str | None:
    """Why a student is not put on the gap's scale, or None. Where the gap is measured at equal λ (privacy: DP noise
    costs perplexity), a student trained at another λ than the ceiling differs from both ends of the gap in its
    training, not in what it learned from whom: a non-DP student "recovers" more than the whole DP gap and sits
    "above" a DP ceiling by construction, so its PGR and the above-ceiling flag would say nothing."""
    if not prop.gap_at_equal_lambda:
        return None
    rec = ev.recs[(role, ev.seeds[0])]
    lam_s, lam_c = float(rec.get("lambda_wts", 0.0)), float(rec["lambda_ceiling"])
    if lam_s == lam_c:
        return None
    return (f"trained at λ = {lam_s:g}, the ceiling at λ = {lam_c:g} (λ: {prop.lambda_meaning}): the gap is "
            "measured at equal λ, so PGR is reported only for students trained at the ceiling's λ")


def _recovered(ev: Evidence, role: str, weak_role: str, metric: str) -> dict[str, Any]:
    """PGR (``task``) or trust gap recovered (``trust``): the ratio of means over seeds, and its bootstrap CI (over
    test rows; over seeds where the task metric cannot be recomputed from predictions).

    The ratio is undefined where its denominator, ceiling − weak, is not clearly away from 0 (its CI includes 0):
    replicates then divide by numbers near 0 and the interval runs off to ± tens. It is undefined too, for the trust
    metric, where the ceiling is clearly the less trustworthy end (no gap in its favour to recover). Either is
    reported as ``undefined`` with the gap it would divide by, instead of a number. (The task gap gate already
    demands a gap with its CI above 0; the trust metric has no such gate.)"""
    roles = (role, weak_role, "strong_ceiling")
    value_of = ev.task_score if metric == "task" else ev.trust
    means = {r: float(np.mean([value_of(r, s) for s in ev.seeds])) for r in roles}
    reps, _ = ev.paired_replicates(roles, metric)
    gap = means["strong_ceiling"] - means[weak_role]
    gap_ci = interval(reps["strong_ceiling"] - reps[weak_role])
    shown = f"{gap:+.4f}" + (f" [{gap_ci[0]:+.4f}, {gap_ci[1]:+.4f}]" if gap_ci else "")
    if gap == 0 or gap_ci is None or gap_ci[0] <= 0 <= gap_ci[1]:
        return {"value": None, "ci": None, "undefined": f"no {metric} gap to recover: ceiling − weak = {shown}"}
    if metric == "trust" and (gap > 0) != bool(ev.prop.higher_is_better):
        # the ceiling clearly less trustworthy than the weak model: the ratio would call a student more trustworthy
        # than its teacher a negative "recovery"; there is no gap in the ceiling's favour to recover
        return {"value": None, "ci": None, "reversed": True, "undefined": f"the ceiling is less trustworthy than the "
                f"weak model (ceiling − weak = {shown}): no trust gap to recover"}
    value = ratio(means[role], means[weak_role], means["strong_ceiling"])
    ci = interval([ratio(a, b, c) for a, b, c in zip(reps[role], reps[weak_role], reps["strong_ceiling"],
                                                     strict=True)])
    return _stat(value, ci)


def summary_line(v: dict[str, Any], learn_fix: str, gap_fix: str) -> str:
    """The one line a run ends with: the gap and "valid weak-to-strong setting", or what failed and the likely fix
    (the property's advice: ``gap_fix`` where the gap failed, else ``learn_fix``, where a model did not learn)."""
    strategies = v["strategies"]
    if not strategies:
        return "validity: not checked (no complete strategy in the results)"
    gaps = [s["gap"] for s in strategies.values() if s.get("gap", {}).get("value") is not None]
    worst = min(gaps, key=lambda g: g["value"]) if gaps else None
    shown = (f"{v['task_metric']} gap (ceiling − weak) {worst['value']:+.3f} "
             f"[{worst['ci'][0]:+.3f}, {worst['ci'][1]:+.3f}]" if worst and worst["ci"] else "gap not measured")
    if v["valid"]:
        return f"{shown} ≥ min_gap {v['min_gap']:g} in every strategy: valid weak-to-strong setting"
    bad = [name for name, s in strategies.items() if not s["valid"]]
    reasons = list(dict.fromkeys(r.split(" (")[0] for name in bad for r in strategies[name]["reasons"]))
    gap_failed = any("gap" in r for r in reasons)
    fix = gap_fix if gap_failed else learn_fix
    failed = f"{', '.join(bad)}: {'; '.join(reasons)}"
    return f"NOT a valid weak-to-strong setting ({shown}): {failed}. Likely fix: {fix}"
