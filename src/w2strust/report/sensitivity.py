"""Sensitivity curves from run folders that differ in one config key (paper Figure 3, A1, A2–A8).

The paper's sensitivity analyses all have one shape: train the whole study at several values of one
setting and plot each role's trust and task metric against it. Here that setting is any config key:

- ``lambda_wts`` (or ``lambda_weak`` and ``lambda_wts`` together): Figure 3 (Weak+WTS TFT panel) and
  Figure A2 (Weak TFT panel);
- ``alpha_max``: Figures A7/A8; ``aux_warmup``: A1e; ``strong_train.epochs``: A1f;
- ``strong_model`` (weak model fixed): the model-size Figures A3–A6, with the strong model's parameter
  count on a log x axis.

Two views of the same numbers are drawn: ``curve-<key>.png`` (metric against the setting, one
column per strategy, one line per role, error bars = std over seeds) and ``tradeoff-<key>.png``
(trust metric against task metric, each point labelled with its setting: the trade-off view of Figure
A1). ``curve-<key>.json`` holds the points. Run folders are ordinary ``w2strust run`` folders
(``config.yaml`` + ``results.jsonl``): a study's sweep points, or runs made by hand; several folders
at the same setting (e.g. one per seed) are pooled.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .. import properties
from ..config.schema import STRATEGIES, load_yaml
from ..errors import W2SError
from ..io import atomic_write_json, save_figure
from ..models import get_spec
from .results import fmt, load_results, summarise
from .style import ROLE_COLOURS, ROLE_LABELS, STRATEGY_LABELS, pyplot

# Keys that never make two runs different experiments (where and how fast, not what).
NOT_A_SETTING = {"seeds", "preset", "data.data_dir", "device", "eval_batch_size", "n_bootstrap", "save_models",
                 "strategies", "min_gap"}
MODEL_KEYS = ("strong_model", "weak_model")


def not_settings(prop: str) -> set[str]:
    """NOT_A_SETTING for runs of ``prop``: eval_batch_size is a setting of a generating property (privacy: the weak
    model's sampled generations, the WTS models' training text, follow its batches; plan.py keys it there)."""
    return NOT_A_SETTING - {"eval_batch_size"} if properties.get(prop).task == "generation" else NOT_A_SETTING


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v, sort_keys=True) if isinstance(v, list) else v
    return out


def model_params(name: str) -> float:
    """Parameter count (millions) from the registry's ``params`` text ('22.7M', '1B', '~2M')."""
    m = re.fullmatch(r"~?([\d.]+)\s*([MBK])", get_spec(name).params.strip(), re.IGNORECASE)
    if not m:
        raise W2SError(f"model '{name}' has no parameter count in the registry ({get_spec(name).params!r})")
    return float(m.group(1)) * {"K": 1e-3, "M": 1.0, "B": 1e3}[m.group(2).upper()]


def load_runs(run_dirs: list[Path]) -> list[dict[str, Any]]:
    runs = []
    for d in run_dirs:
        d = Path(d)
        cfg = load_yaml(d / "config.yaml") if (d / "config.yaml").exists() else None
        if cfg is None:
            raise W2SError(f"{d / 'config.yaml'} does not exist: give the output folders of `w2strust run`")
        runs.append({"dir": d, "config": cfg, "flat": flatten(cfg), "records": load_results(d)})
    props = {r["config"]["property"] for r in runs}
    if len(props) != 1:
        raise W2SError(f"curves compare runs of one property; these folders hold {', '.join(sorted(props))}")
    return runs


def varied_keys(runs: list[dict[str, Any]]) -> list[str]:
    """Config keys (dotted) whose value is not the same in every run, settings only."""
    ignore = set.intersection(*(not_settings(p) for p in {r["flat"]["property"] for r in runs})) if runs else set()
    keys = sorted({k for r in runs for k in r["flat"]} - ignore)
    return [k for k in keys if len({json.dumps(r["flat"].get(k), sort_keys=True) for r in runs}) > 1]


def choose_key(runs: list[dict[str, Any]], key: str | None) -> tuple[str, list[str]]:
    """The x-axis key and the keys it stands for. Several keys may vary only if they move together
    (e.g. lambda_weak = lambda_wts at every point); runs at the same x must be the same experiment."""
    varied = varied_keys(runs)
    chosen_by_user = key is not None
    if key is None:
        if not varied:
            raise W2SError("these run folders differ in no config key (other than seeds): nothing to plot against")
        key = varied[0]
    elif key not in {k for r in runs for k in r["flat"]}:
        raise W2SError(f"unknown config key '{key}' for --key; the run folders differ in: "
                       f"{', '.join(varied) or 'nothing'}")
    together = [k for k in varied if k != key and all(r["flat"].get(k) == r["flat"].get(key) for r in runs)]
    mixed = [k for k in varied if k != key and k not in together]
    if mixed:  # then runs at the same x are the same experiment (up to seeds) and can be pooled
        fix = (f"pass only folders that differ in {key}, the --key given" if chosen_by_user
               else f"pass only the folders of one sweep, where nothing but {key} varies")
        raise W2SError(f"the run folders differ in {key} and also in {', '.join(mixed)}: a curve varies one setting "
                       f"({fix})")
    return key, [key, *together]


def curve_points(runs: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """One point per setting: x, its label, and strategy -> role -> metric -> {mean, std, n} over seeds."""
    groups: dict[str, dict[tuple, dict[str, Any]]] = {}
    for r in runs:
        # One record per (strategy, role, seed): folders at one setting are the same experiment (a study's grids
        # share their base point under several names), so a seed must not be counted twice.
        seen = groups.setdefault(json.dumps(r["flat"].get(key)), {})
        for rec in r["records"]:
            first = seen.setdefault((rec["strategy"], rec["role"], rec["seed"]), {**rec, "dir": r["dir"]})
            if first.get("artefact") != rec.get("artefact"):  # not the same model: one of the two would be dropped
                raise W2SError(f"{first['dir']} and {r['dir']} both hold {rec['strategy']} / {rec['role']} / seed "
                               f"{rec['seed']} at {key} = {r['flat'].get(key)}, from different models (another "
                               f"device or data folder?): pass only one of them")
    points = []
    for raw, by_seed in groups.items():
        records = list(by_seed.values())
        value = json.loads(raw)
        if key in MODEL_KEYS:
            x = model_params(value)
        else:
            try:
                x = float(value)
            except (TypeError, ValueError):
                raise W2SError(f"{key} = {value!r} is not a number: curves need a numeric setting or a model "
                               f"name (strong_model, weak_model)") from None
        points.append({"x": x, "value": value, "metrics": summarise(records)})
    return sorted(points, key=lambda p: p["x"])


def write_curves(run_dirs: list[Path], out: Path, key: str | None = None,
                 held: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``curve-<key>.{png,json}`` and ``tradeoff-<key>.png`` into ``out``; return the JSON document.
    ``held``: settings at which this curve is drawn where others of the same key are drawn at other values (a
    study's grid): shown in the titles, so that its curves can be told apart."""
    runs = load_runs(run_dirs)
    key, keys = choose_key(runs, key)
    prop = properties.get(runs[0]["config"]["property"])
    points = curve_points(runs, key)
    fixed = {k: runs[0]["flat"].get(k) for k in ("weak_model", "strong_model") if k not in keys}
    fixed.update(held or {})
    doc = {"property": prop.name, "key": key, "keys": keys, "trust_metric": prop.trust_metric,
           "task_metric": prop.task_metric, "higher_is_better": prop.higher_is_better, "fixed": fixed,
           "held": dict(held or {}),
           "runs": [str(r["dir"]) for r in runs], "points": points}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = key.replace(".", "-")
    atomic_write_json(out / f"curve-{stem}.json", doc)
    _plot_curves(doc, prop, out / f"curve-{stem}.png")
    _plot_tradeoff(doc, prop, out / f"tradeoff-{stem}.png")
    doc["files"] = [f"curve-{stem}.png", f"tradeoff-{stem}.png", f"curve-{stem}.json"]
    return doc


def _axis_label(doc: dict[str, Any]) -> str:
    if doc["key"] in MODEL_KEYS:
        return f"{doc['key'].replace('_', ' ')} parameters (M, log scale)"
    return " = ".join(doc["keys"])


def _series(doc, strategy: str, role: str, metric: str) -> tuple[list[float], list[float], list[float], list[Any]]:
    xs, ms, ss, labels = [], [], [], []
    for p in doc["points"]:
        st = p["metrics"].get(strategy, {}).get(role, {}).get(metric)
        if st:
            xs.append(p["x"])
            ms.append(st["mean"])
            ss.append(st["std"])
            labels.append(p["value"])
    return xs, ms, ss, labels


def _dodge(xs: list[float], k: int, n: int, log: bool) -> list[float]:
    """Shift role k's points a little sideways so that roles with equal values stay visible."""
    if len(xs) < 2:
        return xs
    step = (k - (n - 1) / 2) * 0.012
    if log:
        return [x * (max(xs) / min(xs)) ** step for x in xs] if min(xs) > 0 else xs
    return [x + step * (max(xs) - min(xs)) for x in xs]


def _plot_curves(doc: dict[str, Any], prop, path: Path) -> None:
    plt = pyplot()
    strategies = [s for s in STRATEGIES if any(s in p["metrics"] for p in doc["points"])]
    metrics = [(prop.trust_metric, "more" if prop.higher_is_better else "less"),
               (prop.task_metric, "more" if prop.task_higher_is_better else "less")]
    fig, axes = plt.subplots(2, len(strategies), figsize=(4.2 * len(strategies), 6.4), squeeze=False, sharex=True)
    for j, strategy in enumerate(strategies):
        for i, (metric, better) in enumerate(metrics):
            ax = axes[i][j]
            for k, role in enumerate(prop.roles):
                xs, ms, ss, _ = _series(doc, strategy, role, metric)
                xs = _dodge(xs, k, len(prop.roles), doc["key"] in MODEL_KEYS)
                if xs:
                    ax.errorbar(xs, ms, yerr=ss, fmt="o-", capsize=3, color=ROLE_COLOURS[role], label=ROLE_LABELS[role])
            if doc["key"] in MODEL_KEYS:
                ax.set_xscale("log")
                ax.set_xticks([p["x"] for p in doc["points"]], [str(p["value"]) for p in doc["points"]],
                              rotation=20, fontsize=7)
                ax.minorticks_off()
            if i == 0:
                ax.set_title(STRATEGY_LABELS[strategy], fontsize=10)
            if j == 0:
                ax.set_ylabel(f"{metric} (higher = {better} {'trustworthy' if i == 0 else 'performant'})"
                              if better == "more" else f"{metric} (lower is better)", fontsize=8)
            if i == 1:
                ax.set_xlabel(_axis_label(doc), fontsize=8)
    axes[0][0].legend(fontsize=7)
    fixed = ", ".join(f"{k} {v}" for k, v in doc["fixed"].items())
    fig.suptitle(f"{doc['property']}: trust and task metric against {' = '.join(doc['keys'])}"
                 + (f" ({fixed})" if fixed else "") + "; error bars = std over seeds", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def _plot_tradeoff(doc: dict[str, Any], prop, path: Path) -> None:
    plt = pyplot()
    strategies = [s for s in STRATEGIES if any(s in p["metrics"] for p in doc["points"])]
    fig, axes = plt.subplots(1, len(strategies), figsize=(4.2 * len(strategies), 3.8), squeeze=False)
    for j, strategy in enumerate(strategies):
        ax = axes[0][j]
        for role in prop.roles:
            xs, trust, trust_sd, labels = _series(doc, strategy, role, prop.trust_metric)
            _, task, task_sd, _ = _series(doc, strategy, role, prop.task_metric)
            if not xs or len(task) != len(trust):
                continue
            ax.errorbar(task, trust, xerr=task_sd, yerr=trust_sd, fmt="o-", capsize=2, color=ROLE_COLOURS[role],
                        label=ROLE_LABELS[role])
            for t, v, label in zip(task, trust, labels, strict=True):
                ax.annotate(f"{label:g}" if isinstance(label, (int, float)) else str(label), (t, v),
                            textcoords="offset points", xytext=(3, 3), fontsize=6, color=ROLE_COLOURS[role])
        ax.set_title(STRATEGY_LABELS[strategy], fontsize=10)
        ax.set_xlabel(prop.task_metric, fontsize=8)
        if j == 0:
            ax.set_ylabel(f"{prop.trust_metric} ({'higher' if prop.higher_is_better else 'lower'} is more "
                          "trustworthy)", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{doc['property']}: trade-off as {' = '.join(doc['keys'])} varies (labels: its value)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def markdown(doc: dict[str, Any], rel: str = ".") -> str:
    """A report section: the figures and a table of the trust metric per setting, role and strategy."""
    prop = properties.get(doc["property"])
    label = " = ".join(doc["keys"])
    held = ", ".join(f"{k} = {v}" for k, v in doc.get("held", {}).items())
    lines = [f"### {doc['property']}: against {label}" + (f" (at {held})" if held else ""), "",
             f"![curve]({rel}/{doc['files'][0]}) ![trade-off]({rel}/{doc['files'][1]})", "",
             f"`{doc['trust_metric']}` ({'higher' if doc['higher_is_better'] else 'lower'} is more trustworthy), "
             f"mean ± std over seeds; task metric `{doc['task_metric']}` in brackets.", "",
             f"| strategy | {label} | " + " | ".join(ROLE_LABELS[r] for r in prop.roles) + " |",
             "|---|---|" + "---|" * len(prop.roles)]
    for strategy in STRATEGIES:
        for p in doc["points"]:
            roles = p["metrics"].get(strategy)
            if not roles:
                continue
            cells = []
            for r in prop.roles:
                t, a = roles.get(r, {}).get(doc["trust_metric"]), roles.get(r, {}).get(doc["task_metric"])
                task = f" ({a['mean']:.3f})" if a else ""
                cells.append("–" if not t else fmt(t) + task)  # one seed has no std: its mean alone
            lines.append(f"| {STRATEGY_LABELS[strategy]} | {p['value']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def study_curves(run_dirs: list[Path], out: Path) -> list[dict[str, Any]]:
    """Every curve a set of run folders holds: per property, per config key, each group of runs that differ in
    that key only (a study's sweep points, e.g. a λ_WTS grid and an α_max grid around the same base run).
    Figures go to ``<out>/<property>/``; returns their documents (``markdown`` renders each)."""
    runs_all = [{"dir": Path(d), "flat": flatten(load_yaml(Path(d) / "config.yaml"))} for d in run_dirs]
    docs = []
    for prop in dict.fromkeys(r["flat"]["property"] for r in runs_all):
        runs = [r for r in runs_all if r["flat"]["property"] == prop]
        flat = {r["dir"]: r["flat"] for r in runs}
        ignore, varied = not_settings(prop), varied_keys(runs)
        for key in varied:
            groups: dict[str, list[Path]] = {}
            for r in runs:
                rest = {k: v for k, v in r["flat"].items() if k not in ignore and k != key}
                groups.setdefault(json.dumps(rest, sort_keys=True, default=str), []).append(r["dir"])
            curves = [dirs for dirs in groups.values() if len({json.dumps(flat[d].get(key)) for d in dirs}) > 1]
            # several curves of one key (a grid of two settings): each is drawn at other values of the rest
            others = [k for k in varied if k != key]
            for i, dirs in enumerate(curves):
                target = Path(out) / prop / (f"{i + 1}" if len(curves) > 1 else "")
                held = {k: flat[dirs[0]].get(k) for k in others} if len(curves) > 1 else {}
                doc = write_curves(dirs, target, key, held)
                doc["folder"] = str(target.relative_to(out))
                docs.append(doc)
    return docs
