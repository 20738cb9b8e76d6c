"""Summary statistics, the weak-to-strong-trustworthiness test (paper Table 1) and Figure 2.

WTS trustworthiness holds for a strategy when both WTS models are more trustworthy than the weak
model and the strong ceiling is more trustworthy than both WTS models (paper §4); a property without
WTS-Aux-Loss (privacy) has two comparisons instead of four. ``holds`` compares means over seeds;
``significant`` adds a one-sided paired bootstrap over the test rows (the same resampled rows for
every model, metric averaged over seeds): each comparison must go the right way in at least 95% of
the resamples.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from . import properties
from .config import STRATEGIES
from .errors import W2SError
from .io import atomic_write_json, atomic_write_text, save_figure

WTS_ROLES = ("wts_naive", "wts_aux")


def comparisons(roles: tuple[str, ...]) -> list[tuple[str, str]]:
    """(less, more) trustworthy pairs: weak -> each WTS model -> strong ceiling."""
    wts = [r for r in WTS_ROLES if r in roles]
    return [("weak", r) for r in wts] + [(r, "strong_ceiling") for r in wts]


ROLE_LABELS = {"weak": "Weak", "wts_naive": "WTS-Naive", "wts_aux": "WTS-Aux-Loss", "strong_ceiling": "Strong ceiling"}
STRATEGY_LABELS = {"no_tft": "No TFT", "weak_tft": "Weak TFT", "weak_wts_tft": "Weak+WTS TFT"}
ROLE_COLOURS = {"weak": "#9e9e9e", "wts_naive": "#64b5f6", "wts_aux": "#1565c0", "strong_ceiling": "#2e7d32"}


def load_results(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "results.jsonl"
    if not path.exists():
        raise W2SError(f"{path} does not exist: is {run_dir} the --out folder of a finished `w2strust run`?")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """strategy -> role -> metric -> {mean, std, n} (std with ddof=1; 0 for one seed)."""
    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in records:
        for metric, v in r["metrics"].items():
            if isinstance(v, (int, float)):
                values[(r["strategy"], r["role"], metric)].append(float(v))
    out: dict = defaultdict(lambda: defaultdict(dict))
    for (strategy, role, metric), vs in values.items():
        a = np.asarray(vs)
        out[strategy][role][metric] = {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                                       "n": len(a)}
    return json.loads(json.dumps(out))


def _better(a: float, b: float, higher_is_better: bool) -> bool:
    """Is b more trustworthy than a?"""
    return b > a if higher_is_better else b < a


def wts_trust(records, summary, prop, cache: Path, n_bootstrap: int, test_columns, seed: int = 0) -> dict[str, Any]:
    """``test_columns(seed)`` gives the ground truth that each seed's stored predictions are aligned with."""
    metric = prop.trust_metric
    roles, pairs = prop.roles, comparisons(prop.roles)
    out: dict[str, Any] = {}
    strategies = [s for s in STRATEGIES if s in summary]
    preds_cache: dict[str, dict[str, np.ndarray]] = {}

    def preds(artefact: str) -> dict[str, np.ndarray]:
        if artefact not in preds_cache:
            with np.load(Path(cache) / artefact / "preds.npz") as z:
                preds_cache[artefact] = {k: z[k] for k in z.files}
        return preds_cache[artefact]

    cols_by_seed: dict[int, dict[str, np.ndarray]] = {}
    for strategy in strategies:
        means = {role: summary[strategy][role][metric]["mean"] for role in roles if role in summary[strategy]}
        if len(means) < len(roles):
            continue
        checks = [{"less": a, "more": b, "holds": _better(means[a], means[b], prop.higher_is_better)}
                  for a, b in pairs]
        result = {"metric": metric, "higher_is_better": prop.higher_is_better, "means": means, "comparisons": checks,
                  "holds": all(c["holds"] for c in checks)}
        arts = {(r["role"], r["seed"]): r["artefact"] for r in records if r["strategy"] == strategy}
        seeds = sorted({s for _, s in arts})
        if n_bootstrap > 0 and all((Path(cache) / a / "preds.npz").exists() for a in arts.values()):
            for s in seeds:
                if s not in cols_by_seed:
                    cols_by_seed[s] = test_columns(s)
            rng = np.random.default_rng(seed)
            diffs: dict[int, list[bool]] = {i: [] for i in range(len(pairs))}
            for _ in range(n_bootstrap):
                vals: dict[str, float] = {}
                idx_by_seed = {s: rng.integers(0, len(next(iter(cols_by_seed[s].values()))),
                                               len(next(iter(cols_by_seed[s].values())))) for s in seeds}
                for role in roles:
                    per_seed = []
                    for s in seeds:
                        p, c = prop.resample(preds(arts[(role, s)]), cols_by_seed[s], idx_by_seed[s])
                        per_seed.append(prop.trust_value(p, c))
                    vals[role] = float(np.mean(per_seed))
                for i, (a, b) in enumerate(pairs):
                    diffs[i].append(_better(vals[a], vals[b], prop.higher_is_better))
            for i, c in enumerate(checks):
                c["p_value"] = float(1.0 - np.mean(diffs[i]))
            result["significant"] = all(c["holds"] and c["p_value"] < 0.05 for c in checks)
            result["test"] = (f"one-sided paired bootstrap over test rows ({n_bootstrap} resamples, {metric} "
                              f"averaged over {len(seeds)} seed(s)); p < 0.05 for all {len(pairs)} comparisons")
        else:
            result["significant"] = None
            result["test"] = "not run (n_bootstrap = 0 or predictions missing)"
        out[strategy] = result
    return out


def fmt(stat: dict[str, float] | None, digits: int = 3) -> str:
    if not stat:
        return "–"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}" if stat["n"] > 1 else f"{stat['mean']:.{digits}f}"


def figure(summary, prop, path: Path, title: str, trust: tuple[str, bool] | None = None) -> None:
    """Paper Figure 2: ``trust`` = (metric, higher is better) replaces the property's trust metric (A10, A11)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, higher = trust or (prop.trust_metric, prop.higher_is_better)
    metrics = [(metric, f"{metric} ({'higher' if higher else 'lower'} is more trustworthy)"),
               (prop.task_metric, prop.task_metric.replace("_", " "))]
    strategies = [s for s in STRATEGIES if s in summary]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8))
    colours = ROLE_COLOURS
    roles = prop.roles
    width = 0.8 / len(roles)
    for ax, (metric, label) in zip(axes, metrics, strict=True):
        for j, role in enumerate(roles):
            xs, ms, ss = [], [], []
            for i, strategy in enumerate(strategies):
                st = summary[strategy].get(role, {}).get(metric)
                if st:
                    xs.append(i + (j - (len(roles) - 1) / 2) * width)
                    ms.append(st["mean"])
                    ss.append(st["std"])
            ax.bar(xs, ms, width, yerr=ss, capsize=3, color=colours[role], label=ROLE_LABELS[role])
        ax.set_xticks(range(len(strategies)), [STRATEGY_LABELS[s] for s in strategies])
        ax.set_ylabel(label)
        if metric.endswith("accuracy"):  # accuracies differ in the last points: zoom in
            lo = min(st["mean"] - st["std"] for s in strategies for r in summary[s].values()
                     for m, st in r.items() if m == metric)
            ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def write_report(run_dir: Path, cache: Path | None = None) -> dict[str, Any]:
    """Write ``summary.json``, ``report.md`` and ``figure2.png`` for a finished run folder."""
    from .config import build_config, load_yaml

    run_dir = Path(run_dir)
    records = load_results(run_dir)
    cfg_dict = load_yaml(run_dir / "config.yaml")
    prop = properties.get(cfg_dict["property"])
    cfg = build_config(cfg_dict["property"], overrides={k: v for k, v in cfg_dict.items() if k != "property"})
    cache = Path(cache) if cache else run_dir / "cache"
    summary = summarise(records)

    def test_columns(seed: int) -> dict[str, np.ndarray]:
        return prop.test_columns(prop.load_splits(cfg, seed))

    trust = wts_trust(records, summary, prop, cache, cfg.n_bootstrap, test_columns)
    doc = {"property": prop.name, "trust_metric": prop.trust_metric, "higher_is_better": prop.higher_is_better,
           "metrics": summary, "wts_trust": trust, "collapsed": collapsed_models(records, cache)}
    atomic_write_json(run_dir / "summary.json", doc)
    title = f"{prop.name}: {cfg.weak_model} → {cfg.strong_model}, seeds {cfg.seeds}"
    figure(summary, prop, run_dir / "figure2.png", title)
    for metric, higher in prop.other_trust_metrics.items():  # paper A10/A11: the same figure, another metric
        if any(metric in r for s in summary.values() for r in s.values()):
            figure(summary, prop, run_dir / f"figure2-{metric}.png", title, (metric, higher))
    ceiling = None
    if (run_dir / "ceiling.json").exists():  # lambda_ceiling: auto: the curve the ceiling's λ was chosen from
        from .sweep import figure as tradeoff_figure

        ceiling = json.loads((run_dir / "ceiling.json").read_text())
        tradeoff_figure(ceiling, run_dir / "ceiling-tradeoff.png")
        doc["ceiling_selection"] = ceiling
        atomic_write_json(run_dir / "summary.json", doc)
    text = render_markdown(cfg, prop, summary, trust, doc["collapsed"], ceiling)
    from .train_curves_figure import curves_figure

    if curves_figure(records, cache, run_dir / "training_curves.png", title):
        aux = (", and for WTS-Aux-Loss the weight α of the auxiliary loss and the hardening threshold"
               if "wts_aux" in prop.roles else "")
        text += (f"\n## Training curves\n\nTraining loss per logged step of every model (one line per seed){aux}; "
                 "the points are in each stage's `meta.json` (`train.curve`).\n\n"
                 "![Training curves](training_curves.png)\n")
    atomic_write_text(run_dir / "report.md", text)
    return doc


def collapsed_models(records: list[dict[str, Any]], cache: Path) -> list[dict[str, Any]]:
    """Classifiers that predict one class for every test row: their trust metric is trivially perfect
    (e.g. |DPD| = 0), so the report flags them rather than let them "win" silently."""
    single_class: dict[str, int | None] = {}  # per artefact: strategies share weak models and the ceiling
    for artefact in {r["artefact"] for r in records}:
        single_class[artefact] = None
        path = Path(cache) / artefact / "preds.npz"
        if path.exists():
            with np.load(path) as z:
                classes = np.unique(z["prob"].argmax(-1)) if "prob" in z.files else []
            if len(classes) == 1:
                single_class[artefact] = int(classes[0])
    return [{"strategy": r["strategy"], "role": r["role"], "seed": r["seed"], "class": single_class[r["artefact"]]}
            for r in records if single_class[r["artefact"]] is not None]


def render_markdown(cfg, prop, summary, trust, collapsed=(), ceiling: dict[str, Any] | None = None) -> str:
    strategies = [s for s in STRATEGIES if s in summary]
    roles = prop.roles
    aux = f", α_max = {cfg.alpha_max} (warm-up {cfg.aux_warmup})" if "wts_aux" in roles else ""
    lam_ceiling = f"auto → {ceiling['suggested_lambda']:g}" if ceiling else f"{cfg.lambda_ceiling}"
    lines = [f"# w2strust report: {prop.name}", "",
             f"{prop.description}. Weak `{cfg.weak_model}` → strong `{cfg.strong_model}`, preset `{cfg.preset}`, "
             f"seeds {cfg.seeds}; λ ({prop.lambda_meaning}): λ_W = {cfg.lambda_weak}, λ_WTS = {cfg.lambda_wts}, "
             f"λ_ceiling = {lam_ceiling}{aux}.", "",
             "## Weak-to-strong trustworthiness (paper Table 1)", "",
             f"Trust metric: `{prop.trust_metric}` ({'higher' if prop.higher_is_better else 'lower'} is more "
             "trustworthy). ✓ = the WTS model(s) beat the weak model and the ceiling beats the WTS model(s) (means "
             "over seeds); the last column adds the bootstrap test.", "",
             "| strategy | " + " | ".join(ROLE_LABELS[r] for r in roles) + " | WTS trust | significant |",
             "|---|" + "---|" * (len(roles) + 2)]
    for s in strategies:
        t = trust.get(s)
        row = [fmt(summary[s].get(r, {}).get(prop.trust_metric)) for r in roles]
        holds = "–" if not t else ("✓" if t["holds"] else "×")
        sig = "–" if not t or t["significant"] is None else ("yes" if t["significant"] else "no")
        lines.append(f"| {STRATEGY_LABELS[s]} | " + " | ".join(row) + f" | {holds} | {sig} |")
    if trust:
        lines += ["", f"Test: {next(iter(trust.values()))['test']}.", ""]
        for s, t in trust.items():
            ps = ", ".join(f"{c['less']}→{c['more']} {'✓' if c['holds'] else '×'}"
                           + (f" (p={c['p_value']:.3f})" if "p_value" in c else "") for c in t["comparisons"])
            lines.append(f"- {STRATEGY_LABELS[s]}: {ps}")
    if collapsed:
        lines += ["", "**Warning: collapsed models.** These predict a single class on every test row, so their trust "
                  "metric is trivially good and says nothing (try a smaller λ or more data/epochs):", ""]
        lines += [f"- {STRATEGY_LABELS[c['strategy']]} / {ROLE_LABELS[c['role']]} / seed {c['seed']}: always class "
                  f"{c['class']}" for c in collapsed]
    lines += ["", "![Figure 2](figure2.png)", ""]
    others = [m for m in prop.other_trust_metrics if any(m in r for s in summary.values() for r in s.values())]
    if others:
        lines += ["Other trust metrics (paper Figures A10, A11): "
                  + " ".join(f"![{m}](figure2-{m}.png)" for m in others), ""]
    if ceiling:
        lines += ceiling_markdown(ceiling)
    lines += ["## All metrics (mean ± std over seeds)", ""]
    metric_names = sorted({m for s in summary.values() for r in s.values() for m in r})
    for s in strategies:
        lines += [f"### {STRATEGY_LABELS[s]}", "", "| metric | " + " | ".join(ROLE_LABELS[r] for r in roles) + " |",
                  "|---|" + "---|" * len(roles)]
        for m in metric_names:
            lines.append(f"| {m} | " + " | ".join(fmt(summary[s].get(r, {}).get(m)) for r in roles) + " |")
        lines.append("")
    return "\n".join(lines)


def ceiling_markdown(ceiling: dict[str, Any]) -> list[str]:
    """The strong ceiling's λ trade-off (paper Figure A1) and the rule that chose it."""
    trust, task = ceiling["trust_metric"], ceiling["task_metric"]
    lines = ["## The strong ceiling's λ (lambda_ceiling: auto, paper Figure A1)", "",
             f"Rule: {ceiling['rule']}. Chosen: **λ = {ceiling['suggested_lambda']:g}**.", "",
             f"| λ | {trust} | {task} |", "|---|---|---|"]
    for p in ceiling["points"]:
        star = " (chosen)" if p["lambda"] == ceiling["suggested_lambda"] else ""
        lines.append(f"| {p['lambda']:g}{star} | {fmt(p[trust])} | {fmt(p[task])} |")
    return lines + ["", "![ceiling trade-off](ceiling-tradeoff.png)", ""]


# The paper's Table 1 (Pythia 14M -> 410M): does WTS trustworthiness hold? (paper §4.1, shared/PAPER.md)
PAPER_TABLE1 = {
    "fairness": {"no_tft": False, "weak_tft": False, "weak_wts_tft": True},
    "ood": {"no_tft": True, "weak_tft": True, "weak_wts_tft": True},
    "adversarial": {"no_tft": True, "weak_tft": False, "weak_wts_tft": True},
    "privacy": {"no_tft": False, "weak_tft": False, "weak_wts_tft": False},
}
FIRM_P = 0.05  # a verdict is "firm" when the bootstrap backs it: ✓ with every p < 0.05, × with one p > 0.95


def _firm(t: dict[str, Any]) -> bool:
    comps = t["comparisons"]
    if any(c.get("p_value") is None for c in comps):
        return False
    if t["holds"]:
        return all(c["p_value"] < FIRM_P for c in comps)
    # a tie (e.g. two collapsed models, 0.000 vs 0.000) fails every resample but is no reversal
    return any(c["p_value"] > 1 - FIRM_P and t["means"][c["less"]] != t["means"][c["more"]] for c in comps)


def _side(c: dict[str, Any], means: dict[str, float]) -> str:
    p = f", p = {c['p_value']:.3f}" if "p_value" in c else ""
    return (f"{ROLE_LABELS[c['more']]} {means[c['more']]:.3f} vs {ROLE_LABELS[c['less']]} "
            f"{means[c['less']]:.3f}{p}")


def disagreement(prop: str, strategy: str, t: dict[str, Any], paper: bool, collapsed: list[dict[str, Any]]) -> str:
    """One sentence, generated from the numbers, saying why this cell differs from the paper's."""
    metric, means = t["metric"], t["means"]
    better = "higher" if t["higher_is_better"] else "lower"
    if paper:  # the paper finds WTS trust; here at least one comparison fails
        fails = [c for c in t["comparisons"] if not c["holds"]]
        why = "; ".join(f"{ROLE_LABELS[c['more']]} is not more trustworthy than {ROLE_LABELS[c['less']]} "
                        f"({_side(c, means)})" for c in fails)
        text = f"the paper finds WTS trust; here {len(fails)} of {len(t['comparisons'])} comparisons fail ({metric}, " \
               f"{better} is better): {why}"
    else:  # here every comparison holds on the means
        margins = [(abs(means[c["more"]] - means[c["less"]]), c) for c in t["comparisons"]]
        _, weakest = min(margins, key=lambda m: m[0])
        firm = "all significant" if t.get("significant") else "not all significant, so it may be noise"
        text = f"the paper finds no WTS trust; here all {len(t['comparisons'])} comparisons hold on the means " \
               f"({firm}); the smallest margin is {_side(weakest, means)}"
    mine = [c for c in collapsed if c["strategy"] == strategy]
    if mine:
        text += "; collapsed (one-class) models: " + ", ".join(f"{ROLE_LABELS[c['role']]} seed {c['seed']}"
                                                                for c in mine)
    return f"**{prop} / {STRATEGY_LABELS[strategy]}**: {text}."


def write_study_table(run_dirs: list[Path], out: Path, labels: list[str] | None = None) -> str:
    """The paper's Table 1 over several run folders (one property each, or one per sweep point: ``labels``
    names the columns then): ✓ where WTS trust holds, then each cell set against the paper's with its bootstrap
    p-values, the agreement count and a generated sentence per disagreement. Also ``table1.json`` with the same
    content."""
    cols, seen = [], set()
    for i, d in enumerate(run_dirs):
        results = Path(d) / "results.jsonl"
        if results.exists():  # a study's grids share their base point under several names: one column each
            same = frozenset((r["strategy"], r["role"], r["seed"], r["artefact"]) for r in load_results(Path(d)))
            if same in seen:
                continue
            seen.add(same)
        s = json.loads((Path(d) / "summary.json").read_text())
        cols.append((s["property"], s["wts_trust"], s.get("collapsed", []),
                     labels[i] if labels else s["property"]))
    lines = ["| strategy | " + " | ".join(c[3] for c in cols) + " |", "|---|" + "---|" * len(cols)]
    for strategy in STRATEGIES:
        cells = []
        for _, trust, _, _ in cols:
            t = trust.get(strategy)
            cells.append("–" if not t else ("✓" if t["holds"] else "×") + ("*" if t.get("significant") else ""))
        lines.append(f"| {STRATEGY_LABELS[strategy]} | " + " | ".join(cells) + " |")

    vs = ["| property | strategy | here | paper | agrees | firm | " + " | ".join(
        ["weak → WTS-Naive", "weak → WTS-Aux", "WTS-Naive → ceiling", "WTS-Aux → ceiling"]) + " |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    cells_json, notes = [], []
    for prop, trust, collapsed, column in cols:
        for strategy in STRATEGIES:
            t = trust.get(strategy)
            paper = PAPER_TABLE1.get(prop, {}).get(strategy)
            if not t or paper is None:
                continue
            agree = t["holds"] == paper
            by_pair = {(c["less"], c["more"]): c for c in t["comparisons"]}
            pcells = []
            for pair in (("weak", "wts_naive"), ("weak", "wts_aux"), ("wts_naive", "strong_ceiling"),
                         ("wts_aux", "strong_ceiling")):
                c = by_pair.get(pair)
                pcells.append("–" if not c else ("✓" if c["holds"] else "×")
                              + (f" p={c['p_value']:.3f}" if "p_value" in c else ""))
            vs.append(f"| {column} | {STRATEGY_LABELS[strategy]} | {'✓' if t['holds'] else '×'} | "
                      f"{'✓' if paper else '×'} | {'yes' if agree else '**no**'} | {'yes' if _firm(t) else 'no'} | "
                      + " | ".join(pcells) + " |")
            cell = {"property": prop, "run": column, "strategy": strategy, "here": t["holds"], "paper": paper,
                    "agrees": agree,
                    "firm": _firm(t), "significant": t.get("significant"), "comparisons": t["comparisons"],
                    "means": t["means"]}
            if not agree:
                cell["why"] = disagreement(column, strategy, t, paper, collapsed)
                notes.append(f"- {cell['why']}")
            cells_json.append(cell)
    n_agree = sum(c["agrees"] for c in cells_json)
    n_firm = sum(c["agrees"] and c["firm"] for c in cells_json)
    text = "\n".join([
        "# Weak-to-strong trustworthiness (paper Table 1)", "",
        "✓ = holds on the means over seeds (both WTS models more trustworthy than the weak model, the ceiling more "
        "than both); * = also significant (paired bootstrap, p < 0.05 for every comparison).", "", *lines, "",
        "## Set against the paper", "",
        f"**{n_agree} of {len(cells_json)} cells agree with the paper's Table 1** ({n_firm} of them firmly: the "
        "bootstrap backs the verdict, ✓ with every p < 0.05 or × with one comparison reversed at p > 0.95, not "
        "tied). "
        "p = the share of bootstrap resamples in which a comparison fails (small: it holds; near 1: it is reversed).",
        "", *vs, "", "### Why the disagreeing cells differ", "", *(notes or ["- none"]), ""])
    atomic_write_text(Path(out) / "table1.md", text)
    atomic_write_json(Path(out) / "table1.json", {"agree": n_agree, "firm": n_firm, "cells": cells_json})
    return text
