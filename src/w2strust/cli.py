"""Command line: ``w2strust run | study | sweep | report | curves | models | data``, a thin layer over the Python
API (``api.py``): it parses, calls the API and prints.

The commands import the API when they run, not when this module is imported: local worker processes re-import
the command's main module, and must set their progress-bar row before tqdm (pulled in by the API) is imported."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .errors import Terminated, W2SError, forget_signals, on_signal

# Exit codes: 0 success; 2 an error the user can fix (bad config, data, paths: one line saying how);
# 1 an unexpected exception, i.e. a bug (one line + the path of a log file with the traceback);
# 130 interrupted (Ctrl-C), 143 terminated (SIGTERM): finished stages stay cached either way.
EXIT_USER, EXIT_BUG, EXIT_INT, EXIT_TERM = 2, 1, 130, 143


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line like every other error (not usage text + error)."""

    def error(self, message: str):
        raise W2SError(f"{message} (see `{self.prog} --help`)")


def _config_args(p: argparse.ArgumentParser, study: bool = False) -> None:
    """The options that build run configs (``study``: no property argument, and the file's preset by default)."""
    if study:
        p.add_argument("study_file", nargs="?", help="study YAML, e.g. configs/study-smoke.yaml (see README: Studies)")
        p.add_argument("--properties", help="comma-separated properties (overrides the file's; or use without a file)")
        p.add_argument("--preset", help="preset for every run (overrides the file's; default quick)")
    else:
        p.add_argument("property", help="trust property: fairness, ood, adversarial, privacy, ...")
        p.add_argument("--preset", help="smoke (tiny random models), quick (bundled models, CPU), paper (Pythia "
                                        "from the Hub, GPU); default: the --config file's preset, else quick")
        p.add_argument("--config", help="YAML file of config keys (applied after the preset)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set weak_train.lr=1e-4 (repeatable)"
                        + ("; applied to every run, after the study file" if study else ""))
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--strategies", help="comma-separated subset of no_tft,weak_tft,weak_wts_tft")
    p.add_argument("--data-dir",
                   help="local data folder laid out like shared/data (else $W2STRUST_DATA, else download)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps (checked before anything trains)")
    p.add_argument("--precision", help="auto (default: bf16 autocast where the device multiplies bf16 natively, "
                                       "else fp32) | fp32 | bf16 | fp16")
    p.add_argument("--log", choices=("none", "tensorboard", "wandb"),
                   help="also log every stage's training curve to TensorBoard (<out>/tensorboard) or Weights & Biases "
                        "(offline unless configured); needs the optional extra w2strust[tensorboard] / [wandb]")


def _output_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--out", help=f"output folder (default {default})")
    p.add_argument("--cache", help="artefact cache folder (default <out>/cache); share it between runs to reuse "
                                   "models (on a cluster: shared storage)")


def _executor_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("execution (see README: Executors)")
    g.add_argument("--workers", type=int, default=1,
                   help="local worker processes running stages in parallel (default 1 = this process); "
                        "with --executor ray: most stages in flight (default: as many as Ray schedules)")
    g.add_argument("--per-gpu", type=int, default=1, metavar="K",
                   help="stages sharing one GPU (worker i uses GPU i // K); default 1")
    g.add_argument("--threads", type=int, default=0,
                   help="CPU threads per stage (default 0 = automatic: the cores split between the workers; ray: 1)")
    g.add_argument("--executor", default="local", help="local (default) or ray")
    g.add_argument("--ray-address", help="Ray cluster to join: auto or HOST:PORT (default: start a local Ray)")
    g.add_argument("--ray-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for the Ray cluster at --ray-address to answer (default 60)")
    g.add_argument("--ray-logs", action="store_true", help="show Ray's own log lines (hidden by default)")
    g.add_argument("--retries", type=int, default=2, help="retries of a stage whose worker died (default 2)")
    g.add_argument("--yes", action="store_true",
                   help="train even when more than 1,000 stages are missing (look first with `study --dry-run`)")


def _settings(args) -> dict:
    """The API keywords the config options give (an empty --seeds '' is passed on: an error, not the default)."""
    return {"overrides": args.overrides, "seeds": args.seeds, "strategies": args.strategies,
            "data_dir": args.data_dir, "device": args.device, "precision": args.precision}


def _preset(args) -> str | None:
    """--preset, else the preset the --config file names (a run's config.yaml: rerunning it rebuilds that run, not
    that run's keys on top of another preset), else quick. A file made without a preset ("custom") gets none."""
    if args.preset:
        return args.preset
    if args.config:
        from .config.schema import load_yaml

        named = load_yaml(args.config).get("preset")
        if isinstance(named, str) and named:
            return None if named == "custom" else named
    return "quick"


def _execution(args) -> dict:
    return {"workers": args.workers, "threads": args.threads, "per_gpu": args.per_gpu,
            "executor_name": args.executor, "ray_address": args.ray_address, "retries": args.retries,
            "ray_timeout": args.ray_timeout, "ray_logs": args.ray_logs, "yes": args.yes}


def cmd_run(args) -> None:
    from . import api

    started = time.time()
    res = api.run(args.property, _preset(args), config_file=args.config, log=args.log, out=args.out,
                  cache=args.cache, **_settings(args), **_execution(args))
    _print_summary(res.dir)
    print(f"\n{len(res.trained)} model(s) trained, the rest loaded from {res.cache}; "
          f"wall time {time.time() - started:.0f}s. Report: {res.dir / 'report.md'}")
    print(res.summary["validity"]["line"])  # the last line: is this a weak-to-strong setting?


def cmd_study(args) -> None:
    from . import api

    started = time.time()
    res = api.study(args.study_file, properties=args.properties, preset=args.preset, out=args.out, cache=args.cache,
                    log=args.log, dry_run=args.dry_run, **_settings(args), **_execution(args))
    if args.dry_run:
        print(res, end="")
        return
    out = res.dir
    print((out / "table1.md").read_text())
    for name, run in res.runs.items():
        print(f"{name}: {run.summary['validity']['line']}")
    print(f"Study report (Table 1 vs the paper, every curve): {out / 'report.md'}")
    print(f"{len(res.runs)} run folder(s) under {out} (index: {out / 'study.json'}); {len(res.trained)} stage(s) "
          f"trained, the rest loaded from {res.index['cache']}; wall time {time.time() - started:.0f}s. "
          f"Stage log: {out / 'stages.log'}")


def cmd_sweep(args) -> None:
    from . import api
    from .experiment.sweep import SWEEP_ROLES, run_sweep

    if args.role not in SWEEP_ROLES:
        raise W2SError(f"--role must be one of {', '.join(SWEEP_ROLES)}, got '{args.role}'")
    from .config.schema import comma_items

    items = comma_items(args.lambdas, "--lambdas", "0,1,3,10")
    try:
        lambdas = [float(x) for x in items]
    except ValueError:
        raise W2SError(f"--lambdas must be comma-separated numbers, e.g. 0,1,3,10; got '{args.lambdas}'") from None
    if not lambdas or min(lambdas) < 0:
        raise W2SError(f"--lambdas needs at least one value, all >= 0; got '{args.lambdas}'")
    if len(set(lambdas)) != len(lambdas):  # the same models would count twice in the curve's mean ± std (n)
        raise W2SError(f"--lambdas repeats a value ('{args.lambdas}'): a repeated λ would count its models twice")
    cfg = api.configure(args.property, _preset(args), config_file=args.config, log=args.log, **_settings(args))
    out = Path(args.out or f"runs/{cfg.property}-{cfg.preset}-sweep-{args.role}")
    api.check_writable_dir(out, "--out")
    api.check_writable_dir(Path(args.cache) if args.cache else out / "cache", "--cache")
    api.check_models(cfg)
    result = run_sweep(cfg, args.role, lambdas, out, Path(args.cache) if args.cache else None, args.max_drop,
                       api.executor(**_execution(args)))
    trust, task = result["trust_metric"], result["task_metric"]
    print(f"\n{cfg.property} {args.role} λ sweep ({out / 'tradeoff.png'}):")
    for p in result["points"]:
        print(f"  λ={p['lambda']:<8g} {trust} {p[trust]['mean']:.4f} ± {p[trust]['std']:.4f}   "
              f"{task} {p[task]['mean']:.4f} ± {p[task]['std']:.4f}")
    print(f"suggested λ (most trustworthy within {args.max_drop} {task} of the reference λ: 0, else the least "
          f"regularised): "
          f"{result['suggested_lambda']:g}")


def cmd_report(args) -> None:
    from . import api

    dirs = [Path(d) for d in args.run_dirs]
    table_dir = api.report(*dirs, out=args.out, cache=args.cache)
    if len(dirs) == 1 and (dirs[0] / "study.json").exists():
        print((dirs[0] / "table1.md").read_text())
        print(f"Study report: {dirs[0] / 'report.md'}")
        return
    for d in dirs:
        _print_summary(d)
        print(json.loads((d / "summary.json").read_text())["validity"]["line"])
    if table_dir is not None:
        print((table_dir / "table1.md").read_text())


def cmd_curves(args) -> None:
    from .report.sensitivity import write_curves

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
    width = max(len(name) for name in MODELS.names()) + 1
    print(f"{'name':<{width}}{'source':<9}{'arch':<9}{'params':<9}{'status':<40}where / licence")
    for name, s in MODELS.items():
        where = s.hub_id or (" ".join(s.packages[:1]) + (" …" if len(s.packages) > 1 else "")) or "config"
        print(f"{name:<{width}}{s.source:<9}{s.arch:<9}{s.params:<9}{availability(name):<40}{where}; {s.licence}")


def cmd_data(args) -> None:
    import numpy as np

    from . import api, properties

    cfg = api.configure(args.property, _preset(args), config_file=args.config, log=args.log, **_settings(args))
    prop = properties.get(cfg.property)
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


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _report_bug(exc: BaseException) -> str:
    """Write the traceback of an unexpected exception to a log file; return its path."""
    from . import __version__

    fd, path = tempfile.mkstemp(prefix=f"w2strust-error-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write(f"w2strust {__version__}, python {sys.version.split()[0]}, argv {sys.argv}\n\n")
        f.write("".join(traceback.format_exception(exc)))
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every failure ends as one ``w2strust: error: ...`` line on stderr (see the exit codes above)."""
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in handled}
    in_main_thread = True
    try:
        for s in handled:
            # SIGINT ignored at start (a job started with & by a non-interactive shell) stays ignored
            if previous[s] is not signal.SIG_IGN:
                signal.signal(s, on_signal)
    except ValueError:  # not the main thread (e.g. called from a worker): leave signals alone
        in_main_thread = False
    try:
        return _main(argv)
    except W2SError as e:
        print(f"w2strust: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt as e:
        what = "terminated" if isinstance(e, Terminated) else "interrupted"
        if getattr(e, "trains", False):  # set by _main for a command that trains
            print(f"\nw2strust: {what}; finished stages are cached, run the same command again to resume.",
                  file=sys.stderr)
        else:  # a dry run, a report, a listing: nothing trains, and every file is written atomically
            print(f"\nw2strust: {what}; nothing was trained (this command trains nothing).", file=sys.stderr)
        return EXIT_TERM if isinstance(e, Terminated) else EXIT_INT
    except SystemExit as e:  # --help, or a library calling sys.exit
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USER)
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, traceback in a log file
        log = _report_bug(e)
        if type(e).__name__ == "OutOfMemoryError":
            print(f"w2strust: error: out of memory on the device ({_one_line(e, 150)}); lower weak_train/"
                  f"strong_train.batch_size or eval_batch_size (traceback in {log})", file=sys.stderr)
            return EXIT_USER
        if isinstance(e, OSError):
            where = f" ({e.filename})" if e.filename else ""
            print(f"w2strust: error: {e.strerror or _one_line(e, 200)}{where}; check the path, free space and "
                  f"permissions (traceback in {log})", file=sys.stderr)
            return EXIT_USER
        print(f"w2strust: error: unexpected {type(e).__name__}: {_one_line(e, 200)}. This is a bug in w2strust: "
              f"please report it with the traceback in {log}", file=sys.stderr)
        return EXIT_BUG
    finally:
        forget_signals()
        if in_main_thread:
            for s in handled:
                signal.signal(s, previous[s])


def _main(argv: list[str] | None) -> int:
    parser = _Parser(prog="w2strust", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="train weak, WTS and ceiling models for one property; write results and report")
    _config_args(p)
    _output_args(p, "runs/<property>-<preset>")
    _executor_args(p)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("study", help="run a study file (properties x strategies x seeds x sweeps) as one stage graph; "
                                     "writes a run folder per property and sweep point, study.json and Table 1")
    _config_args(p, study=True)
    _output_args(p, "runs/<study file name>")
    p.add_argument("--dry-run", action="store_true",
                   help="print the stages, how many are cached and the time left (from recorded stage times)")
    _executor_args(p)
    p.set_defaults(fn=cmd_study)
    p = sub.add_parser("sweep", help="λ trade-off curve of the weak model or strong ceiling (paper Fig. A1)")
    _config_args(p)
    p.add_argument("--role", default="strong_ceiling", help="weak or strong_ceiling (default)")
    p.add_argument("--lambdas", default="0,1,3,10", help="comma-separated λ values (default 0,1,3,10)")
    p.add_argument("--max-drop", type=float, default=0.015,
                   help="largest task-metric drop accepted when suggesting λ (default 0.015)")
    _output_args(p, "runs/<property>-<preset>-sweep-<role>")
    _executor_args(p)
    p.set_defaults(fn=cmd_sweep)
    p = sub.add_parser("report", help="rebuild summary.json, report.md and figures from run folders")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", help="where to write the combined table1.md (several run folders)")
    p.add_argument("--cache", help="the cache the run(s) used (default: the one each run recorded in run.json, else "
                                   "<run>/cache)")
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
    from .engine.workers import quiet_libraries

    quiet_libraries()
    try:
        args.fn(args)
    except KeyboardInterrupt as e:  # main's message says whether finished stages are cached
        e.trains = args.cmd in ("run", "study", "sweep") and not getattr(args, "dry_run", False)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
