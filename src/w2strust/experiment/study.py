"""A study: several properties, strategies, seeds, model pairs, presets and swept config keys, run as one
stage graph (``w2strust study STUDY.yaml``).

The study file (YAML)::

    properties: [fairness, ood, adversarial, privacy]
    preset: smoke                  # one preset, or a list to sweep
    strategies: [no_tft, weak_tft, weak_wts_tft]
    seeds: [0, 1]
    models:                        # optional model pairs (a list sweeps them); default: each preset's pair
      - {weak: pythia-14m, strong: pythia-410m}
    lambda_wts: [0.5, 1.0]         # any config key given as a list is swept (all combinations)
    alpha_max: [0.1, 0.25]
    weak_train: {lr: [1e-4, 3e-4]} # nested keys too
    sweeps:                        # optional: several separate grids (their union), each combined with the above
      - {lambda_weak: [1, 3, 10]}
      - {alpha_max: [0, 0.5, 1.0]}
    per_property:                  # keys (and sweeps) for one property only
      privacy: {lambda_wts: [4.0, 8.0]}

Keys whose config value is itself a list (``seeds``, ``strategies``) are not swept: a run uses the whole
list. ``extra`` is passed as written. Every sweep point is an ordinary run folder, so everything that
reads a run (``w2strust report``, summary.json, report.md) works on it; see ``write_index`` for the layout.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..config.build import build_config
from ..config.schema import ExperimentConfig, comma_items, load_yaml, save_yaml
from ..engine.cache import StageCache
from ..engine.scheduler import ExecutorOptions, Job, run_jobs
from ..errors import W2SError
from ..io import atomic_write_json
from ..report.study_report import write_study_reports
from . import tracking
from .plan import other_threads_hint, plan_jobs, write_results

STUDY_KEYS = ("properties", "preset", "models", "sweeps", "per_property")
NOT_SWEPT = ("seeds", "strategies", "extra", "ceiling_lambdas")  # config values that are lists themselves


@dataclass
class StudyRun:
    """One run folder of a study: a property at one sweep point."""
    cfg: ExperimentConfig
    dir: str  # relative to the study's output folder
    point: dict[str, Any] = field(default_factory=dict)  # swept key -> value at this point


def load_study(path: str | Path | dict[str, Any] | None, properties: str | None = None, preset: str | None = None,
               cli_overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[StudyRun]]:
    """The study file (or the same mapping as a dict, or just ``--properties``) -> the validated run configs, one
    per (property, point)."""
    spec = json.loads(json.dumps(path)) if isinstance(path, dict) else load_yaml(path) if path else {}
    where = f"study file {path}" if path is not None and not isinstance(path, dict) else "the study"
    if path is not None and not spec and not properties:
        raise W2SError(f"{where} is empty; give at least `properties: [fairness, ...]` (README: Studies)")
    if "properties" in spec and not spec["properties"] and not properties:
        raise W2SError(f"{where} has `properties: []`; name at least one property, e.g. properties: [fairness]")
    if properties:
        spec["properties"] = comma_items(properties, "--properties", "fairness,ood")
    if preset:
        spec["preset"] = preset
    _check_shape(spec, where)
    props = spec.get("properties") or ["fairness"]
    if isinstance(props, str):
        props = [props]
    per_property = spec.get("per_property") or {}
    if properties and isinstance(per_property, dict):  # --properties narrows a study file: drop the others' keys
        per_property = {k: v for k, v in per_property.items() if k in props}
    if (not isinstance(per_property, dict) or set(per_property) - set(props)
            or not all(v is None or isinstance(v, dict) for v in per_property.values())):
        raise W2SError(f"per_property must map properties of the study ({', '.join(props)}) to mappings of config "
                       f"keys, e.g. {{fairness: {{lambda_wts: 3}}}}; got {per_property!r}"[:400])
    runs: list[StudyRun] = []
    for prop in props:
        body = {k: v for k, v in spec.items() if k not in ("properties", "per_property")}
        body = _merge(body, per_property.get(prop) or {})
        points = _points(body)
        swept = [k for k in dict.fromkeys(k for p in points for k in p) if len({_show(p.get(k)) for p in points}) > 1]
        _check_cli_overrides(cli_overrides or {}, swept, points, prop)
        for point in points:
            cfg = _config(prop, {**_fixed(body), **point}, cli_overrides or {})
            shown = {k: point[k] for k in swept if k in point}
            name = "__".join(f"{k}={_show(v)}" for k, v in shown.items())
            runs.append(StudyRun(cfg, f"{prop}/{name}" if name else prop, shown))
    seen: dict[str, StudyRun] = {}
    for r in runs:  # two grids may contain the same point
        first = seen.setdefault(r.dir, r)
        if first.cfg != r.cfg:  # not the same point: values shown alike (``:g``, 6 significant digits) would merge
            raise W2SError(f"two runs of the study get one folder, {r.dir}, with different settings (swept values "
                           f"that agree in their first 6 significant digits?); give values that differ there")
    return spec, list(seen.values())


def _check_shape(spec: Any, where: str) -> None:
    """The study keys have the shapes README "Studies" gives (per_property and sweeps are checked where they are
    read, config keys by build_config)."""
    if not isinstance(spec, dict):
        raise W2SError(f"{where} must be a mapping of study keys (properties, preset, sweeps, per_property, config "
                       f"keys); got {type(spec).__name__}")
    props = spec.get("properties")
    if props is not None and not (isinstance(props, str) or
                                  (isinstance(props, list) and all(isinstance(p, str) and p for p in props))):
        raise W2SError(f"{where}: properties must be a list of property names, e.g. [fairness, ood]; got {props!r}")
    if isinstance(props, list) and len(set(props)) != len(props):
        raise W2SError(f"{where}: properties lists a property twice: {props}")
    preset = spec.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise W2SError(f"{where}: preset must be one name (smoke, quick, full, paper); got {preset!r}")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> dotted keys (``{"weak_train": {"lr": [..]}}`` -> ``{"weak_train.lr": [..]}``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k not in ("extra", "models"):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def _is_sweep(key: str, value: Any) -> bool:
    return isinstance(value, list) and key not in NOT_SWEPT and key.split(".")[0] not in NOT_SWEPT


def _grid(d: dict[str, Any]) -> list[dict[str, Any]]:
    swept = {k: v for k, v in _flatten(d).items() if _is_sweep(k, v) and k not in ("sweeps", "per_property")}
    for k, v in swept.items():
        if not v:
            raise W2SError(f"study key '{k}' is an empty list; give at least one value")
    return [dict(zip(swept, combo, strict=True)) for combo in itertools.product(*swept.values())]


def _points(body: dict[str, Any]) -> list[dict[str, Any]]:
    base = _grid({k: v for k, v in body.items() if k != "sweeps"})
    extra = body.get("sweeps") or [{}]
    if not isinstance(extra, list) or not all(isinstance(g, dict) for g in extra):
        raise W2SError("study key 'sweeps' must be a list of mappings, e.g. [{lambda_wts: [1, 3]}, {alpha_max: [0.1]}]")
    # a grid's single values (``{lambda_wts: [1, 3], alpha_max: 0.1}``) belong to its points as much as its lists
    return [{**b, **_in_order(g_spec, {**_fixed(g_spec), **g})}
            for g_spec in extra for g in _grid(g_spec) for b in base]


def _in_order(spec: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """``point``'s keys in the order ``spec`` (a study mapping) gives them: the run folders' names follow the file."""
    return {k: point[k] for k in _flatten(spec) if k in point}


def _check_cli_overrides(cli: dict[str, Any], swept: list[str], points: list[dict[str, Any]], prop: str) -> None:
    """``--set`` (and --precision, --device, ...) apply on top of every point: one that sets a swept key would give
    every run folder of the sweep the same value while the folders keep the names of the values they no longer hold."""
    for key in _flatten(cli):
        hit = key if key in swept else "models" if key in ("weak_model", "strong_model") and "models" in swept else None
        if hit is not None:
            values = ", ".join(dict.fromkeys(_show(p[hit]) for p in points if hit in p))
            raise W2SError(f"the override of '{key}' (--set or a command-line option) would replace the {prop} "
                           f"study's swept values of {hit} ({values}) in every run folder, whose names would then "
                           f"be wrong; drop the override, or give the values in the study file")


def _fixed(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in _flatten(body).items() if not _is_sweep(k, v) and k not in ("sweeps", "per_property")}


def _show(v: Any) -> str:
    if isinstance(v, dict) and set(v) == {"weak", "strong"}:
        return f"{v['weak']}~{v['strong']}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _config(prop: str, flat: dict[str, Any], cli: dict[str, Any]) -> ExperimentConfig:
    preset = flat.pop("preset", None) or "quick"
    models = flat.pop("models", None)
    if models is not None:
        if not (isinstance(models, dict) and set(models) == {"weak", "strong"}):
            raise W2SError("study key 'models' takes pairs like {weak: pythia-14m, strong: pythia-410m}; "
                           f"got {models!r}")
        flat["weak_model"], flat["strong_model"] = models["weak"], models["strong"]
    nested: dict[str, Any] = {}
    for k, v in flat.items():
        node = nested
        *parents, last = k.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = v
    return build_config(prop, preset, None, _merge(nested, cli))


# ---------------------------------------------------------------------------------------------- output
def write_index(out: Path, study_file: str | None, runs: list[StudyRun], cache: Path, stages: dict[str, int]) -> None:
    """``<out>/study.json``: what the study holds, for the reports and figures built on top of it.

    Layout: ``<out>/<property>/`` (nothing swept) or ``<out>/<property>/<key>=<value>__.../`` per sweep point,
    each an ordinary run folder (config.yaml, results.jsonl, summary.json, report.md, figure2.png,
    stages.log); ``<out>/table1.md``; ``<out>/stages.log`` (every stage of the study); the cache.
    """
    swept: dict[str, dict[str, list]] = {}
    for r in runs:
        for k, v in r.point.items():
            values = swept.setdefault(r.cfg.property, {}).setdefault(k, [])
            if v not in values:
                values.append(v)
    doc = {"study_file": study_file, "cache": str(cache), "swept": swept, "stages": stages,
           "runs": [{"dir": r.dir, "property": r.cfg.property, "preset": r.cfg.preset, "weak_model": r.cfg.weak_model,
                     "strong_model": r.cfg.strong_model, "seeds": r.cfg.seeds, "strategies": r.cfg.strategies,
                     "point": r.point} for r in runs]}
    atomic_write_json(Path(out) / "study.json", doc)


def load_index(out: Path) -> dict[str, Any]:
    return json.loads((Path(out) / "study.json").read_text())


def study_metrics(out: Path) -> dict[tuple, dict[str, Any]]:
    """(run folder, strategy, role, seed) -> metrics, over every run folder of a finished study."""
    got = {}
    for run in load_index(out)["runs"]:
        for line in (Path(out) / run["dir"] / "results.jsonl").read_text().splitlines():
            r = json.loads(line)
            got[(run["dir"], r["strategy"], r["role"], r["seed"])] = r["metrics"]
    return got


# ---------------------------------------------------------------------------------------------- running
def study_jobs(runs: list[StudyRun], threads: int | None = None):
    """Every stage of every run, deduplicated by content key, and each run's record stubs. ``threads``: the CPU
    threads per stage of the executor (``ExecutorOptions.stage_threads``; part of a CPU stage's key)."""
    jobs: dict[str, Job] = {}
    stubs: dict[str, list[dict[str, Any]]] = {}
    # a bar for large grids (10,000 runs plan in seconds; the count shows before the first stage is hashed)
    for r in tqdm(runs, desc="planning", unit="run", disable=len(runs) < 500, leave=False, dynamic_ncols=True):
        planned, stubs[r.dir] = plan_jobs(r.cfg, threads)
        for j in planned:
            first = jobs.setdefault(j.key, j)
            if first is not j:  # planned by several runs: it must leave what any of them reads (saved weights too)
                first.needs = tuple(dict.fromkeys(first.needs + j.needs))
                if j.cfg.save_models and not first.cfg.save_models:
                    first.cfg = j.cfg  # the same stage either way; this config also keeps the model's weights
    return list(jobs.values()), stubs


def run_study(runs: list[StudyRun], out: Path, cache: Path, options, study_file: str | None = None) -> list[str]:
    """Train every missing stage of the study (one graph), then write every run folder, study.json and table1.md.
    Returns the stage folders trained now."""
    out, cache = Path(out), Path(cache)
    for kind in dict.fromkeys(r.cfg.log for r in runs):  # a missing optional package stops us before training
        tracking.open_tracker(kind, out)
    jobs, stubs = study_jobs(runs, options.stage_threads())
    write_index(out, study_file, runs, cache, {"total": len(jobs)})  # readable while the study runs
    if any(not (cache / j.stage.dirname / "meta.json").exists() for j in jobs):
        hint = other_threads_hint([r.cfg for r in runs], cache, options.stage_threads())
        if hint:
            print(hint, file=sys.stderr)
    for name in ("table1.md", "table1.json", "report.md"):  # of the last results: rewritten from the new ones below
        (out / name).unlink(missing_ok=True)
    try:
        trained = run_jobs(jobs, cache, options, log_path=out / "stages.log", desc="study")
    except BaseException:  # a stage failed, or Ctrl-C: the runs whose stages all trained still get their folders
        finished = [r for r in runs if _stages_done(r, cache, options.stage_threads())]
        for r in finished:
            _write_run(out, r, stubs[r.dir], cache)
        if finished:
            print(f"study: wrote the {len(finished)} of {len(runs)} run folder(s) whose stages all finished "
                  f"(results.jsonl; `w2strust report <folder>` writes a report; a rerun finishes the study): "
                  f"{', '.join(r.dir for r in finished)[:300]}", file=sys.stderr)
        raise
    for r in runs:
        _write_run(out, r, stubs[r.dir], cache)
    write_index(out, study_file, runs, cache, {"total": len(jobs), "trained_now": len(trained)})
    write_study_reports(out, [out / r.dir for r in runs], labels=[r.dir.replace("__", ", ") for r in runs],
                        cache=cache)
    return [t["stage"] for t in trained]


def _write_run(out: Path, r: StudyRun, stubs: list[dict[str, Any]], cache: Path) -> None:
    run_dir = out / r.dir
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(r.cfg, run_dir / "config.yaml")
    _link_cache(run_dir, cache)
    write_results(run_dir, r.cfg, stubs, cache)


def _stages_done(r: StudyRun, cache: Path, threads: int | None) -> bool:
    """Every stage of the run (the ceiling candidates of ``lambda_ceiling: auto`` too) is whole in the cache."""
    store = StageCache(cache)
    planned, _ = plan_jobs(r.cfg, threads)
    return all(store.problem(j.stage.dirname, j.needs) is None for j in planned)


def _link_cache(run_dir: Path, cache: Path) -> None:
    """``<run>/cache`` -> the study's cache, so ``w2strust report <run>`` finds the artefacts."""
    link = run_dir / "cache"
    if not (link.exists() or link.is_symlink()):
        link.symlink_to(os.path.relpath(cache.resolve(), run_dir.resolve()), target_is_directory=True)


def dry_run(runs: list[StudyRun], cache: Path, options=None) -> str:
    """The stages of a study, which are cached, and an estimate of the time left from recorded stage times.
    ``options``: the executor's (its thread count is part of CPU stages' keys; default one process)."""
    options = options or ExecutorOptions()
    workers = max(1, options.workers)
    jobs, _ = study_jobs(runs, options.stage_threads())
    store = StageCache(cache)
    recorded = _recorded_times(Path(cache))
    lines, left, unknown, n_cached = [], 0.0, 0, 0
    for j in jobs:
        cached = store.problem(j.stage.dirname, j.needs) is None
        n_cached += cached
        est = None if cached else _estimate(j.stage, recorded)
        if not cached:
            if est is None:
                unknown += 1
            else:
                left += est
        state = "cached" if cached else ("todo  ~" + (f"{est:.0f}s" if est is not None else "?"))
        lines.append(f"  {state:<14} {j.stage.dirname}  {j.label}")
    todo = len(jobs) - n_cached
    if not todo:
        eta = "nothing left"
    elif todo == unknown:
        eta = "unknown (no similar stage recorded in the cache yet)"
    else:
        eta = f"about {_human(left / max(1, workers))} with {workers} worker(s) ({_human(left)} of stage time"
        eta += f"; {unknown} stage(s) without a recorded similar stage)" if unknown else ")"
    head = (f"{len(runs)} run(s), {len(jobs)} unique stage(s): {n_cached} cached, {todo} to train. "
            f"Time left: {eta}.")
    hint = other_threads_hint([r.cfg for r in runs], Path(cache), options.stage_threads()) if todo else None
    return "\n".join([head, *lines, head, *([hint] if hint else [])]) + "\n"


def _signature(spec: dict[str, Any], kind: str, coarse: bool) -> str:
    if coarse:
        return json.dumps([spec.get("property"), kind, spec.get("model")])
    s = {k: v for k, v in spec.items() if k not in ("lambda", "aux")}
    return json.dumps([kind, bool(spec.get("aux")), s], sort_keys=True, default=str)


def _recorded_times(cache: Path) -> dict[str, list[float]]:
    """Stage seconds recorded in the cache, by fine (same settings but λ/α) and coarse (property, kind, model)
    signature."""
    times: dict[str, list[float]] = {}
    for meta_path in cache.glob("*/meta.json"):
        try:
            meta = json.loads(meta_path.read_text())
            spec, kind, sec = meta["spec"], meta["stage"], float(meta["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for coarse in (False, True):
            times.setdefault(_signature(spec, kind, coarse), []).append(sec)
    return times


def _estimate(stage, recorded: dict[str, list[float]]) -> float | None:
    for coarse in (False, True):
        hits = recorded.get(_signature(stage.spec, stage.kind, coarse))
        if hits:
            return sum(hits) / len(hits)
    return None


def _human(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min" if seconds >= 90 else \
        f"{seconds:.0f} s"
