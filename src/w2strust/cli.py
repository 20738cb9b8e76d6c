"""Command line: ``w2strust run | study | report | models | data``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .errors import W2SError


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("property", help="trust property: fairness, ood, adversarial, privacy, ...")
    p.add_argument("--preset", default="quick", help="smoke (tiny random models), quick (bundled models, CPU), "
                                                   "paper (Pythia from the Hub, GPU); default quick")
    p.add_argument("--config", help="YAML file of config keys (applied after the preset)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set weak_train.lr=1e-4 (repeatable)")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--strategies", help="comma-separated subset of no_tft,weak_tft,weak_wts_tft")
    p.add_argument("--data-dir",
                   help="local data folder laid out like shared/data (else $W2STRUST_DATA, else download)")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--log", choices=("none", "tensorboard", "wandb"),
                   help="also log every stage's training curve to TensorBoard (<out>/tensorboard) or Weights & Biases "
                        "(offline unless configured); needs the optional extra w2strust[tensorboard] / [wandb]")


def _build(args, prop: str | None = None):
    from .config import build_config, parse_overrides

    overrides = parse_overrides(args.overrides)
    for key in ("seeds", "strategies", "device", "log"):
        if getattr(args, key, None):
            overrides[key] = getattr(args, key)
    if args.data_dir:
        overrides.setdefault("data", {})["data_dir"] = args.data_dir
    return build_config(prop or args.property, args.preset, args.config, overrides)


def _check_models(cfg) -> None:
    """Fail before any training if a model cannot be obtained or cannot serve the property's task (and
    materialise bundled ones now)."""
    from .models import check
    from .properties import get

    for name in dict.fromkeys((cfg.weak_model, cfg.strong_model)):
        check(name, get(cfg.property).task)


def cmd_run(args) -> None:
    from .pipeline import run_experiment

    cfg = _build(args)
    _check_models(cfg)
    out = Path(args.out or f"runs/{cfg.property}-{cfg.preset}")
    started = time.time()
    runner = run_experiment(cfg, out, Path(args.cache) if args.cache else None)
    _print_summary(out)
    print(f"\n{len(runner.trained)} model(s) trained, the rest loaded from {runner.cache}; "
          f"wall time {time.time() - started:.0f}s. Report: {out / 'report.md'}")


def cmd_study(args) -> None:
    from .pipeline import run_experiment
    from .report import write_study_table

    out = Path(args.out or f"runs/study-{args.preset}")
    props = [p.strip() for p in args.properties.split(",") if p.strip()]
    cfgs = [_build(args, p) for p in props]  # validate every config before training anything
    for cfg in cfgs:
        _check_models(cfg)
    for cfg in cfgs:
        run_experiment(cfg, out / cfg.property, Path(args.cache) if args.cache else None)
    write_study_table([out / c.property for c in cfgs], out)
    print((out / "table1.md").read_text())


def cmd_sweep(args) -> None:
    from .sweep import SWEEP_ROLES, run_sweep

    if args.role not in SWEEP_ROLES:
        raise W2SError(f"--role must be one of {', '.join(SWEEP_ROLES)}, got '{args.role}'")
    try:
        lambdas = [float(x) for x in args.lambdas.split(",") if x.strip()]
    except ValueError:
        raise W2SError(f"--lambdas must be comma-separated numbers, e.g. 0,1,3,10; got '{args.lambdas}'") from None
    if not lambdas or min(lambdas) < 0:
        raise W2SError(f"--lambdas needs at least one value, all >= 0; got '{args.lambdas}'")
    cfg = _build(args)
    _check_models(cfg)
    out = Path(args.out or f"runs/{cfg.property}-{cfg.preset}-sweep-{args.role}")
    result = run_sweep(cfg, args.role, lambdas, out, Path(args.cache) if args.cache else None, args.max_drop)
    trust, task = result["trust_metric"], result["task_metric"]
    print(f"\n{cfg.property} {args.role} λ sweep ({out / 'tradeoff.png'}):")
    for p in result["points"]:
        print(f"  λ={p['lambda']:<8g} {trust} {p[trust]['mean']:.4f} ± {p[trust]['std']:.4f}   "
              f"{task} {p[task]['mean']:.4f} ± {p[task]['std']:.4f}")
    print(f"suggested λ (most trustworthy within {args.max_drop} {task} of the smallest λ): "
          f"{result['suggested_lambda']:g}")


def cmd_report(args) -> None:
    from .report import write_report, write_study_table

    dirs = [Path(d) for d in args.run_dirs]
    for d in dirs:
        write_report(d)
        _print_summary(d)
    if len(dirs) > 1 or args.out:
        out = Path(args.out or dirs[0].parent)
        write_study_table(dirs, out)
        print((out / "table1.md").read_text())


def cmd_curves(args) -> None:
    from .curves import write_curves

    out = Path(args.out or Path(args.run_dirs[0]).parent)
    doc = write_curves([Path(d) for d in args.run_dirs], out, args.key)
    trust, task = doc["trust_metric"], doc["task_metric"]
    print(f"{doc['property']}: {trust} and {task} against {' = '.join(doc['keys'])} "
          f"({len(doc['points'])} settings) -> {', '.join(str(out / f) for f in doc['files'])}")


def _print_summary(run_dir: Path) -> None:
    text = (run_dir / "report.md").read_text()
    table = text.split("## Weak-to-strong trustworthiness (paper Table 1)")[1].split("![Figure 2]")[0]
    print(f"\n{run_dir}:{table.rstrip()}")


def cmd_models(args) -> None:
    from .models import MODELS, availability, model_path

    if args.materialise:
        for name in args.materialise:
            print(f"{name}: {model_path(name)}")
        return
    print(f"{'name':<15}{'source':<9}{'arch':<9}{'params':<9}{'status':<40}where / licence")
    for name, s in MODELS.items():
        where = s.hub_id or (" ".join(s.packages[:1]) + (" …" if len(s.packages) > 1 else "")) or "config"
        print(f"{name:<15}{s.source:<9}{s.arch:<9}{s.params:<9}{availability(name):<40}{where}; {s.licence}")


def cmd_data(args) -> None:
    import numpy as np

    cfg = _build(args)
    prop = __import__("w2strust.properties", fromlist=["get"]).get(cfg.property)
    for seed in cfg.seeds:
        splits = prop.load_splits(cfg, seed)
        print(f"{cfg.property} (seed {seed}, data from {cfg.resolved_data_dir() or 'download cache'}):")
        sets = {"D_W": splits.weak, "D_WTS": splits.wts, "D_T": splits.test, **splits.extra}
        for name, ds in sets.items():
            line = f"  {name:<12} {len(ds):>6} rows"
            if "label" in ds.column_names:
                labels = np.asarray(ds["label"])
                line += "  labels " + " ".join(f"{c}:{(labels == c).mean():.1%}" for c in np.unique(labels))
            if "group" in ds.column_names:
                line += f"  group=1: {np.mean(ds['group']):.1%}"
            print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="w2strust", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="train weak, WTS and ceiling models for one property; write results and report")
    _config_args(p)
    p.add_argument("--out", help="output folder (default runs/<property>-<preset>)")
    p.add_argument("--cache", help="artefact cache folder (default <out>/cache); share it between runs to reuse models")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("study", help="run several properties with one preset and write the combined Table 1")
    p.add_argument("--properties", default="fairness", help="comma-separated, e.g. fairness,ood,adversarial,privacy")
    for a in ("--preset", "--config", "--seeds", "--strategies", "--data-dir", "--device", "--log", "--out", "--cache"):
        p.add_argument(a, default="quick" if a == "--preset" else None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(fn=cmd_study)
    p = sub.add_parser("sweep", help="λ trade-off curve of the weak model or strong ceiling (paper Fig. A1)")
    _config_args(p)
    p.add_argument("--role", default="strong_ceiling", help="weak or strong_ceiling (default)")
    p.add_argument("--lambdas", default="0,1,3,10", help="comma-separated λ values (default 0,1,3,10)")
    p.add_argument("--max-drop", type=float, default=0.015,
                   help="largest task-metric drop accepted when suggesting λ (default 0.015)")
    p.add_argument("--out", help="output folder (default runs/<property>-<preset>-sweep-<role>)")
    p.add_argument("--cache", help="artefact cache folder; pass a run's cache to reuse its models")
    p.set_defaults(fn=cmd_sweep)
    p = sub.add_parser("report", help="rebuild summary.json, report.md and figures from run folders")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", help="where to write the combined table1.md (several run folders)")
    p.set_defaults(fn=cmd_report)
    p = sub.add_parser("curves", help="trust and task metric of every role against one setting that the run folders "
                                      "vary (paper Figure 3, A1-A8)")
    p.add_argument("run_dirs", nargs="+", help="run folders that differ in one config key (any number of seeds each)")
    p.add_argument("--key", help="the config key to plot against (default: the one the folders differ in)")
    p.add_argument("--out", help="where to write curve-<key>.png/.json and tradeoff-<key>.png (default: the "
                                 "folders' parent)")
    p.set_defaults(fn=cmd_curves)
    p = sub.add_parser("models", help="list the model registry and what is available here")
    p.add_argument("--materialise", nargs="*", metavar="NAME", help="materialise bundled models into the cache now")
    p.set_defaults(fn=cmd_models)
    p = sub.add_parser("data", help="load a property's data and print split sizes and balances (no raw text)")
    _config_args(p)
    p.set_defaults(fn=cmd_data)
    args = parser.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        args.fn(args)
    except W2SError as e:
        print(f"w2strust: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nw2strust: interrupted; finished stages are cached, run the same command again to resume.",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
