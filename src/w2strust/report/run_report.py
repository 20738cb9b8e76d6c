"""A run folder's report: ``summary.json`` (summary over seeds, the WTS-trust test, collapsed models),
``report.md``, Figure 2 (and its A10/A11 variants), the ceiling's λ trade-off and the training curves."""

from __future__ import annotations

import functools
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .. import properties
from ..config.build import build_config
from ..config.schema import load_yaml
from ..data.fingerprint import fingerprint
from ..errors import W2SError
from ..io import artefact_problem, atomic_write_json, atomic_write_text, dumps_strict, save_figure
from . import validity
from .results import collapsed_models, fmt, fmt_p, load_results, summarise, tied, wts_trust
from .style import ROLE_COLOURS, ROLE_LABELS, STRATEGY_LABELS, pyplot, strategies_in
from .tradeoff import tradeoff_figure
from .training_curves import curves_figure


def _cell(metric: str, stat: dict[str, float] | None) -> str:
    # privacy records ε = 0 for a model trained without DP (run_stage): its privacy loss is unbounded, not zero
    if metric == "epsilon" and stat and stat["mean"] == 0 and stat["std"] == 0:
        return "no DP (ε = ∞)"
    return fmt(stat)


def figure(summary, prop, path: Path, title: str, trust: tuple[str, bool] | None = None) -> None:
    """Paper Figure 2: ``trust`` = (metric, higher is better) replaces the property's trust metric (A10, A11)."""
    plt = pyplot()
    metric, higher = trust or (prop.trust_metric, prop.higher_is_better)
    metrics = [(metric, f"{metric} ({'higher' if higher else 'lower'} is more trustworthy)"),
               (prop.task_metric, prop.task_metric.replace("_", " "))]
    strategies = strategies_in(summary)
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


def run_cache(run_dir: Path) -> Path:
    """The cache a run folder's stages are in: the one its run recorded (``run.json``), else ``<run>/cache``."""
    recorded = Path(run_dir) / "run.json"
    if recorded.is_file():
        try:
            cache = Path(run_dir) / json.loads(recorded.read_text())["cache"]  # relative to the run folder
        except (OSError, ValueError, KeyError, TypeError):
            raise W2SError(f"{recorded} is damaged; pass the run's cache with --cache DIR") from None
        if cache.is_dir():
            return cache
    return Path(run_dir) / "cache"


def _check_config_matches(cfg, prop, cfg_path: Path, cache: Path, records: list[dict[str, Any]], load_meta) -> None:
    """The report rebuilds the test sets from config.yaml: its data settings must be those the run's models were
    trained and tested with (each stage's meta.json records them), or every metric would be computed against
    other rows. A truncated or edited config.yaml otherwise falls back to preset defaults without a word."""
    want = json.loads(dumps_strict({k: v for k, v in asdict(cfg.data).items() if k != "data_dir"}))
    extra = json.loads(dumps_strict(cfg.extra))
    for artefact in dict.fromkeys(r["artefact"] for r in records):
        spec = load_meta(artefact).get("spec") or {}
        trained_on = (spec.get("property"), spec.get("data"), spec.get("extra", extra))
        if "data" in spec and trained_on != (cfg.property, want, extra):
            raise W2SError(f"{cfg_path} does not describe the models in {cache}: {artefact} was trained on "
                           f"property {spec.get('property')}, data {spec.get('data')}, extra {spec.get('extra')}; "
                           f"the config gives {cfg.property}, {want}, {extra}. Restore the run's config.yaml (or "
                           f"rerun its command). Nothing in {cfg_path.parent} was changed")
    # and the data files must hold what they held: the cached predictions are scored against the test rows read now
    now = None
    for artefact in dict.fromkeys(r["artefact"] for r in records):
        then = (load_meta(artefact).get("spec") or {}).get("data_files")
        if then is None:
            continue  # a stage keyed before data files were
        now = now if now is not None else fingerprint(prop.data_files(cfg), cfg.resolved_data_dir())
        if then != now:
            changed = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k))
            raise W2SError(f"the data files differ from those {artefact} was tested on ({', '.join(changed[:3])} in "
                           f"{cfg.resolved_data_dir() or 'the download cache'}): its cached predictions would be "
                           f"scored against other test rows. Restore the data the run used there (the folder is "
                           f"config.yaml's data.data_dir, else $W2STRUST_DATA), or rerun the run's command (it "
                           f"retrains on the data there now). Nothing in {cfg_path.parent} was changed")


def _check_metrics_match(run_dir: Path, records: list[dict[str, Any]], load_meta) -> None:
    """A run writes each record's metrics from its model's meta.json; a hand-edited results.jsonl would otherwise give
    a summary whose metrics contradict the bootstrap tests, which are recomputed from the cached predictions."""
    def same(a: dict, b: dict) -> bool:  # as JSON: NaN is null in both files
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)

    differ = [r["artefact"] for r in records if not same(r["metrics"], load_meta(r["artefact"]).get("metrics", {}))]
    if differ:
        raise W2SError(f"{run_dir / 'results.jsonl'}: the metrics of {len(differ)} record(s) (e.g. {differ[0]}) differ "
                       f"from those cached with the model (the file was edited, or the cache is another run's); rerun "
                       f"the run's command, which rewrites it from the cache. Nothing in {run_dir} was changed")


def forget_report(run_dir: Path) -> None:
    """Remove what ``write_report`` writes, before new results replace the old: a report step that is killed or fails
    must leave no summary (verdicts, gates) of the previous results beside the new ones (`w2strust report` rebuilds)."""
    run_dir = Path(run_dir)
    for path in [run_dir / n for n in ("summary.json", "report.md", "figure2.png", "training_curves.png")] + sorted(
            run_dir.glob("figure2-*.png")):
        path.unlink(missing_ok=True)


def write_report(run_dir: Path, cache: Path | None = None) -> dict[str, Any]:
    """Write ``summary.json``, ``report.md`` and ``figure2.png`` for a finished run folder."""
    run_dir = Path(run_dir)
    records = load_results(run_dir)
    cfg_path = run_dir / "config.yaml"
    cfg_dict = load_yaml(cfg_path)
    if not isinstance(cfg_dict.get("property"), str):
        raise W2SError(f"{cfg_path} names no property: it is not the config.yaml w2strust wrote for this run "
                       f"(damaged or replaced); restore it, or rerun the run's command")
    try:
        prop = properties.get(cfg_dict["property"])
        cfg = build_config(cfg_dict["property"], overrides={k: v for k, v in cfg_dict.items() if k != "property"})
    except W2SError as e:
        raise W2SError(f"{cfg_path}: {e}") from None
    cache = Path(cache) if cache else run_cache(run_dir)
    # every artefact whole (its manifest's sizes and hashes) before anything is read or written: a summary without
    # its tests and warnings, or from damaged predictions, would be worse than the one already there
    problems = {a: artefact_problem(cache / a, ("preds.npz",)) for a in dict.fromkeys(r["artefact"] for r in records)}
    problems = {a: p for a, p in problems.items() if p}
    if problems:
        if all(p == "missing" for p in problems.values()):
            first = next(iter(problems))
            raise W2SError(f"the predictions of {len(problems)} model(s) are not in {cache} (e.g. "
                           f"{cache / first / 'preds.npz'}); pass the cache the run used with --cache DIR, or rerun "
                           f"the run's command to train them again. Nothing in {run_dir} was changed")
        first = next(p for p in problems.values() if p != "missing")
        raise W2SError(f"{len(problems)} model artefact(s) in {cache} are damaged or missing ({first}); rerun the "
                       f"run's command, which retrains them. Nothing in {run_dir} was changed")

    @functools.cache
    def load_meta(artefact: str) -> dict[str, Any]:  # read once per report: the checks and the validity gates
        return json.loads((cache / artefact / "meta.json").read_text())

    _check_config_matches(cfg, prop, cfg_path, cache, records, load_meta)
    _check_metrics_match(run_dir, records, load_meta)
    summary = summarise(records)

    @functools.cache
    def test_columns(seed: int) -> dict[str, np.ndarray]:
        return prop.test_columns(prop.load_splits(cfg, seed))

    @functools.cache
    def load_preds(artefact: str) -> dict[str, np.ndarray]:
        with np.load(cache / artefact / "preds.npz") as z:
            return {k: z[k] for k in z.files}

    trust = wts_trust(records, summary, prop, cache, cfg.n_bootstrap, test_columns, load_preds)
    doc = {"property": prop.name, "trust_metric": prop.trust_metric, "higher_is_better": prop.higher_is_better,
           "metrics": summary, "wts_trust": trust, "collapsed": collapsed_models(records, cache)}
    doc["validity"] = validity.check(prop, records, load_preds, load_meta, test_columns, doc["collapsed"],
                                     cfg.min_gap, cfg.n_bootstrap)
    ceiling = None
    if (run_dir / "ceiling.json").exists():  # lambda_ceiling: auto: the curve the ceiling's λ was chosen from
        ceiling = doc["ceiling_selection"] = json.loads((run_dir / "ceiling.json").read_text())
    atomic_write_json(run_dir / "summary.json", doc)
    title = f"{prop.name}: {cfg.weak_model} → {cfg.strong_model}, seeds {cfg.seeds}"
    figure(summary, prop, run_dir / "figure2.png", title)
    for metric, higher in prop.other_trust_metrics.items():  # paper A10/A11: the same figure, another metric
        if any(metric in r for s in summary.values() for r in s.values()):
            figure(summary, prop, run_dir / f"figure2-{metric}.png", title, (metric, higher))
    if ceiling:
        tradeoff_figure(ceiling, run_dir / "ceiling-tradeoff.png")
    text = render_markdown(cfg, prop, summary, trust, doc["collapsed"], ceiling, doc["validity"])
    if curves_figure(records, cache, run_dir / "training_curves.png", title):
        aux = (", and for WTS-Aux-Loss the weight α of the auxiliary loss and the hardening threshold"
               if "wts_aux" in prop.roles else "")
        text += (f"\n## Training curves\n\nTraining loss per logged step of every model (one line per seed){aux}; "
                 "the points are in each stage's `meta.json` (`train.curve`).\n\n"
                 "![Training curves](training_curves.png)\n")
    atomic_write_text(run_dir / "report.md", text)
    return doc


def render_markdown(cfg, prop, summary, trust, collapsed=(), ceiling: dict[str, Any] | None = None,
                    checks: dict[str, Any] | None = None) -> str:
    strategies = strategies_in(summary)
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
    gates = (checks or {}).get("strategies", {})
    for s in strategies:
        t = trust.get(s)
        row = [fmt(summary[s].get(r, {}).get(prop.trust_metric)) for r in roles]
        holds = "–" if not t else "× (tie: equal means)" if tied(t) else ("✓" if t["holds"] else "×")
        sig = "–" if not t or t["significant"] is None else ("yes" if t["significant"] else "no")
        if s in gates and not gates[s]["valid"]:  # no verdict without a weak-to-strong setting (Validity below)
            holds, sig = f"invalid ({gates[s]['reasons'][0]})", "–"
        lines.append(f"| {STRATEGY_LABELS[s]} | " + " | ".join(row) + f" | {holds} | {sig} |")
    if trust:
        lines += ["", f"Test: {next(iter(trust.values()))['test']}.", ""]
        for s, t in trust.items():
            ps = ", ".join(f"{c['less']}→{c['more']} {'✓' if c['holds'] else '×'}"
                           + (f" ({fmt_p(c['p_value'], t.get('resamples'))})" if "p_value" in c else "")
                           for c in t["comparisons"])
            lines.append(f"- {STRATEGY_LABELS[s]}: {ps}")
    if collapsed:
        lines += ["", "**Warning: collapsed models.** These predict a single class on every test row, so their trust "
                  "metric is trivially good and says nothing (try a smaller λ or more data/epochs):", ""]
        lines += [f"- {STRATEGY_LABELS[c['strategy']]} / {ROLE_LABELS[c['role']]} / seed {c['seed']}: always class "
                  f"{c['class']}" for c in collapsed]
    if checks:
        lines += ["", *validity_markdown(checks, prop)]
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
            lines.append(f"| {m} | " + " | ".join(_cell(m, summary[s].get(r, {}).get(m)) for r in roles) + " |")
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


def _ci(stat: dict[str, Any] | None, digits: int = 3, sign: bool = True) -> str:
    if stat and stat.get("undefined"):  # a ratio over a gap indistinguishable from 0 (validity._recovered)
        return "undefined (ceiling less trustworthy)" if stat.get("reversed") else "undefined (no gap)"
    if not stat or stat.get("value") is None:
        return "–"
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    ci = f" [{f.format(stat['ci'][0])}, {f.format(stat['ci'][1])}]" if stat.get("ci") else ""
    return f.format(stat["value"]) + ci


AT_CEILING_LAMBDA = "Weak at the ceiling's λ"  # the weak model a gap at equal λ compares with (privacy)


def validity_markdown(checks: dict[str, Any], prop) -> list[str]:
    """The validity section (report/validity.py): per strategy the gates, the gap and what each student recovered."""
    students = [r for r in ("wts_naive", "wts_aux") if r in prop.roles]
    lines = ["## Is this a weak-to-strong setting? (validity)", "", f"**{checks['line']}**", "",
             f"Gap and PGR in {checks['gap_units']} of `{checks['task_metric']}`, mean over seeds [95% bootstrap CI]; "
             f"PGR = (student − weak) / (ceiling − weak), 1 = the student closes the gap; trust gap recovered = the "
             f"same ratio of `{prop.trust_metric}`. A strategy is valid when the weak model beats the majority class, "
             f"the ceiling beats the weak model by at least min_gap = {checks['min_gap']:g} on every seed (CI above "
             f"0), the weak model and the ceiling learned (their training loss fell by {checks['loss_drop']:.0%}), and "
             "every student learned (its loss fell too, it is not collapsed, it beats the majority class). Invalid "
             "strategies get no Table 1 verdict.", "",
             "| strategy | weak − majority | ceiling − weak | " + " | ".join(
                 f"{ROLE_LABELS[r]} PGR | {ROLE_LABELS[r]} trust gap recovered" for r in students) + " | valid |",
             "|---|---|---|" + "---|---|" * len(students) + "---|"]
    flags, notes = [], []
    for name, st in checks["strategies"].items():
        cells = [_ci(st.get("weak_beats_majority")), _ci(st.get("gap"))]
        for r in students:
            info = st["students"].get(r, {})
            if info.get("not_compared"):
                cells += ["n/a (unequal λ)"] * 2
                notes.append(f"- {STRATEGY_LABELS[name]} / {ROLE_LABELS[r]}: {info['not_compared']}")
            else:
                cells += [_ci(info.get("pgr"), 2), _ci(info.get("trust_gap_recovered"), 2)]
            notes += [f"- {STRATEGY_LABELS[name]} / {ROLE_LABELS[r]} {what}: undefined, {info[key]['undefined']}"
                      for key, what in (("pgr", "PGR"), ("trust_gap_recovered", "trust gap recovered"))
                      if info.get(key, {}).get("undefined")]
            if info.get("above_ceiling"):
                flags.append(f"- {STRATEGY_LABELS[name]} / {ROLE_LABELS[r]} is above its ceiling on the task metric "
                             f"({info['minus_ceiling']:+.3f}): a student should not beat a ceiling trained on ground "
                             "truth; check the ceiling's recipe")
            flags += [f"- {STRATEGY_LABELS[name]} / {ROLE_LABELS[r]}: {p}" for p in info.get("problems", [])]
        flags += [f"- {STRATEGY_LABELS[name]} / {ROLE_LABELS.get(r, AT_CEILING_LAMBDA)}: {p}"
                  for r, info in st.get("teachers", {}).items() for p in info["problems"]]
        verdict = "yes" if st["valid"] else "no: " + "; ".join(st["reasons"])
        lines.append(f"| {STRATEGY_LABELS[name]} | " + " | ".join(cells) + f" | {verdict} |")
    if notes:
        lines += ["", "Not on the gap's scale:", "", *notes]
    if flags:
        lines += ["", "Flags:", "", *flags]
    return lines + [""]
