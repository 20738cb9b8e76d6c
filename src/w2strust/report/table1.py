"""The paper's Table 1 over several run folders, set against the paper cell by cell (``table1.md``/``.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config.schema import STRATEGIES
from ..io import atomic_write_json, atomic_write_text
from .results import fmt_p, load_results, tied
from .style import ROLE_LABELS, STRATEGY_LABELS

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


def _side(c: dict[str, Any], means: dict[str, float], resamples: int | None = None) -> str:
    p = f", {fmt_p(c['p_value'], resamples)}" if "p_value" in c else ""
    return (f"{ROLE_LABELS[c['more']]} {means[c['more']]:.3f} vs {ROLE_LABELS[c['less']]} "
            f"{means[c['less']]:.3f}{p}")


def disagreement(prop: str, strategy: str, t: dict[str, Any], paper: bool, collapsed: list[dict[str, Any]]) -> str:
    """One sentence, generated from the numbers, saying why this cell differs from the paper's."""
    metric, means = t["metric"], t["means"]
    better = "higher" if t["higher_is_better"] else "lower"
    if paper:  # the paper finds WTS trust; here at least one comparison fails
        fails = [c for c in t["comparisons"] if not c["holds"]]
        why = "; ".join(f"{ROLE_LABELS[c['more']]} is not more trustworthy than {ROLE_LABELS[c['less']]} "
                        f"({_side(c, means, t.get('resamples'))})" for c in fails)
        text = f"the paper finds WTS trust; here {len(fails)} of {len(t['comparisons'])} comparisons fail ({metric}, " \
               f"{better} is better): {why}"
    else:  # here every comparison holds on the means
        margins = [(abs(means[c["more"]] - means[c["less"]]), c) for c in t["comparisons"]]
        _, weakest = min(margins, key=lambda m: m[0])
        firm = "all significant" if t.get("significant") else "not all significant, so it may be noise"
        text = f"the paper finds no WTS trust; here all {len(t['comparisons'])} comparisons hold on the means " \
               f"({firm}); the smallest margin is {_side(weakest, means, t.get('resamples'))}"
    mine = [c for c in collapsed if c["strategy"] == strategy]
    if mine:
        text += "; collapsed (one-class) models: " + ", ".join(f"{ROLE_LABELS[c['role']]} seed {c['seed']}"
                                                                for c in mine)
    return f"**{prop} / {STRATEGY_LABELS[strategy]}**: {text}."


def _invalid(checks: dict[str, Any] | None, strategy: str) -> str | None:
    """``invalid (<reason>)`` where the run's validity gates failed for ``strategy`` (report/validity.py); a summary
    without them (written by an older w2strust) is unchecked: rebuild it with `w2strust report`."""
    if checks is None:
        return "invalid (validity not checked: run `w2strust report` on this folder)"
    st = checks.get("strategies", {}).get(strategy)
    if st is None:
        return "invalid (validity not checked for this strategy)"
    return None if st["valid"] else f"invalid ({st['reasons'][0]})"


def write_study_table(run_dirs: list[Path], out: Path, labels: list[str] | None = None,
                      heading_level: int = 1) -> str:
    """The paper's Table 1 over several run folders (one property each, or one per sweep point: ``labels``
    names the columns then): ✓ where WTS trust holds, then each cell set against the paper's with its bootstrap
    p-values, the agreement count and a generated sentence per disagreement. Also ``table1.json`` with the same
    content. Returns the markdown with its top heading at ``heading_level`` (a study report nests it at 2)."""
    cols, seen, models = [], set(), []
    for i, d in enumerate(run_dirs):
        results = Path(d) / "results.jsonl"
        records = load_results(Path(d)) if results.exists() else []
        # each strategy's models: a λ_WTS sweep trains new students only for Weak+WTS TFT, so its points share the
        # No TFT and Weak TFT models, and such a cell must count once, not once per sweep point
        col_models = {st: frozenset((r["role"], r["seed"], r["artefact"]) for r in records if r["strategy"] == st)
                      for st in STRATEGIES}
        if records:  # a study's grids share their base point under several names: one column each
            same = frozenset(col_models.items())
            if same in seen:
                continue
            seen.add(same)
        s = json.loads((Path(d) / "summary.json").read_text())
        cols.append((s["property"], s["wts_trust"], s.get("collapsed", []),
                     labels[i] if labels else s["property"], s.get("validity")))
        models.append(col_models)
    lines = ["| strategy | " + " | ".join(c[3] for c in cols) + " |", "|---|" + "---|" * len(cols)]
    for strategy in STRATEGIES:
        cells = []
        for _, trust, _, _, checks in cols:
            t, why_not = trust.get(strategy), _invalid(checks, strategy)
            cells.append("–" if not t else why_not if why_not else "× (tie)" if tied(t) else
                         ("✓" if t["holds"] else "×") + ("*" if t.get("significant") else ""))
        lines.append(f"| {STRATEGY_LABELS[strategy]} | " + " | ".join(cells) + " |")

    vs = ["| property | strategy | here | paper | agrees | firm | " + " | ".join(
        ["weak → WTS-Naive", "weak → WTS-Aux", "WTS-Naive → ceiling", "WTS-Aux → ceiling"]) + " |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    cells_json, notes, counted = [], [], {}
    for (prop, trust, collapsed, column, checks), col_models in zip(cols, models, strict=True):
        for strategy in STRATEGIES:
            t = trust.get(strategy)
            paper = PAPER_TABLE1.get(prop, {}).get(strategy)
            if not t or paper is None:
                continue
            same = (prop, strategy, col_models[strategy])
            if col_models[strategy] and same in counted:  # listed and counted under its first column only
                cells_json.append({"property": prop, "run": column, "strategy": strategy,
                                   "same_models_as": counted[same]})
                continue
            counted[same] = column
            why_not = _invalid(checks, strategy)
            agree = t["holds"] == paper
            by_pair = {(c["less"], c["more"]): c for c in t["comparisons"]}
            pcells = []
            for pair in (("weak", "wts_naive"), ("weak", "wts_aux"), ("wts_naive", "strong_ceiling"),
                         ("wts_aux", "strong_ceiling")):
                c = by_pair.get(pair)
                pcells.append("–" if not c else ("✓" if c["holds"] else "×")
                              + (" " + fmt_p(c["p_value"], t.get("resamples")).replace(" ", "")
                                 if "p_value" in c else ""))
            cell = {"property": prop, "run": column, "strategy": strategy, "here": t["holds"], "paper": paper,
                    "agrees": agree, "firm": _firm(t), "significant": t.get("significant"),
                    "comparisons": t["comparisons"], "means": t["means"], "valid": not why_not}
            if why_not or tied(t):  # no verdict: neither agreement nor disagreement
                here = why_not or "× (tie: equal means)"
                cell.update(agrees=None, firm=None, **({"invalid": why_not} if why_not else {"tied": True}))
                vs.append(f"| {column} | {STRATEGY_LABELS[strategy]} | {here} | {'✓' if paper else '×'} | – | – | "
                          + " | ".join(pcells) + " |")
                cells_json.append(cell)
                continue
            vs.append(f"| {column} | {STRATEGY_LABELS[strategy]} | {'✓' if t['holds'] else '×'} | "
                      f"{'✓' if paper else '×'} | {'yes' if agree else '**no**'} | {'yes' if _firm(t) else 'no'} | "
                      + " | ".join(pcells) + " |")
            if not agree:
                cell["why"] = disagreement(column, strategy, t, paper, collapsed)
                notes.append(f"- {cell['why']}")
            cells_json.append(cell)
    repeats = [c for c in cells_json if "same_models_as" in c]
    valid = [c for c in cells_json if c.get("valid")]
    decided = [c for c in valid if not c.get("tied")]
    n_agree = sum(c["agrees"] for c in decided)
    n_firm = sum(c["agrees"] and c["firm"] for c in decided)
    n_invalid = len(cells_json) - len(valid) - len(repeats)
    n_tied = len(valid) - len(decided)
    apart = ""
    if n_tied:
        apart += (f" {n_tied} valid cell(s) are an exact tie of two models' mean trust metric (× only because the "
                  "strict comparison fails) and are counted apart too.")
    if repeats:
        apart += (f" {len(repeats)} cell(s) hold the same models as a cell of an earlier column (a sweep that trains "
                  "new models only for some strategies) and are counted once, under that column.")
    def render(level: int) -> str:
        h = "#" * level
        return "\n".join([
            f"{h} Weak-to-strong trustworthiness (paper Table 1)", "",
            "✓ = holds on the means over seeds (both WTS models more trustworthy than the weak model, the ceiling more "
            "than both); * = also significant (paired bootstrap, p < 0.05 for every comparison).", "", *lines, "",
            f"{h}# Set against the paper", "",
            f"**{n_agree} of {len(decided)} valid cells agree with the paper's Table 1** ({n_firm} of them firmly: the "
            "bootstrap backs the verdict, ✓ with every p < 0.05 or × with one comparison reversed at p > 0.95, not "
            f"tied); {n_invalid} cell(s) are not weak-to-strong settings (`invalid`: a validity gate failed, see the "
            f"run's report) and are counted apart, neither agreeing nor disagreeing.{apart} "
            "p = the share of bootstrap resamples in which a comparison fails (small: it holds; near 1: it is "
            "reversed).", "", *vs, "", f"{h}## Why the disagreeing cells differ", "", *(notes or ["- none"]), ""])

    text = render(heading_level)
    atomic_write_text(Path(out) / "table1.md", render(1))
    atomic_write_json(Path(out) / "table1.json", {"agree": n_agree, "firm": n_firm, "valid": len(decided),
                                                  "tied": n_tied, "invalid": n_invalid, "repeated": len(repeats),
                                                  "cells": cells_json})
    return text
