"""The Python API: what the command line does, for notebooks and scripts.

    import w2strust
    res = w2strust.run("fairness", preset="smoke", seeds=[0, 1], overrides={"lambda_wts": 2.0}, out="runs/fair")
    res.summary["wts_trust"]["weak_wts_tft"]["holds"]     # the WTS-trust verdict of one strategy, on the means
    res.summary["validity"]["strategies"]["weak_wts_tft"]["valid"]  # Table 1 counts the verdict only if True
    res.frame                                            # one row per (strategy, role, seed), a column per metric

``run`` and ``study`` check everything before training (one ``W2SError`` naming the problem and the fix), train
what the cache does not hold, and return the results as ``load_results`` reads them from the output folder: the
same cache, the same files and the same numbers as ``w2strust run`` / ``w2strust study``, which call these.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import models, properties
from .config.build import build_config
from .config.schema import ExperimentConfig, load_yaml, parse_overrides
from .engine.scheduler import ExecutorOptions
from .errors import W2SError
from .experiment.plan import run_experiment
from .experiment.study import dry_run as study_dry_run
from .experiment.study import load_index, load_study, run_study
from .report.results import load_results as load_records
from .report.run_report import write_report
from .report.study_report import write_study_reports
from .report.table1 import write_study_table


@dataclass
class Results:
    """A run folder's results: ``records`` (``results.jsonl``: one per strategy, role and seed, with its test
    metrics), ``summary`` (``summary.json``: mean ± std over seeds, the WTS-trust verdicts and their tests), the
    resolved ``config``, and, when returned by ``run``, the stage folders it ``trained`` and the ``cache``."""
    dir: Path
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    config: dict[str, Any]
    trained: list[str] = field(default_factory=list)
    cache: Path | None = None

    @property
    def frame(self):
        """The records as a pandas DataFrame: the record's fields, then one column per metric."""
        return _frame([{**{k: v for k, v in r.items() if k != "metrics"}, **r["metrics"]} for r in self.records])


@dataclass
class StudyResults:
    """A study folder's results: every run folder's ``Results`` (by its folder name under the study), the
    ``table1`` set against the paper (``table1.json``) and the ``index`` (``study.json``)."""
    dir: Path
    runs: dict[str, Results]
    table1: dict[str, Any]
    index: dict[str, Any]
    trained: list[str] = field(default_factory=list)

    @property
    def frame(self):
        """Every run's records in one DataFrame, with the run folder in the column ``run``."""
        return _frame([{"run": name, **{k: v for k, v in r.items() if k != "metrics"}, **r["metrics"]}
                       for name, res in self.runs.items() for r in res.records])


def _frame(rows: list[dict[str, Any]]):
    try:
        import pandas as pd
    except ImportError:
        raise W2SError("Results.frame needs pandas: pip install pandas (records and summary work without it)") from None
    return pd.DataFrame(rows)


def _overrides(overrides: dict[str, Any] | list[str] | None, **given: Any) -> dict[str, Any]:
    """``overrides`` (a nested dict, or ``["key=value", ...]`` as ``--set`` takes them) plus the named settings that
    were given (``seeds=[0, 1]``, ``data_dir=...``): one nested dict of config overrides."""
    out = parse_overrides(overrides) if isinstance(overrides, list) else _plain(overrides or {})
    for key, value in given.items():
        if value is None:
            continue
        if key == "data_dir":
            out.setdefault("data", {})["data_dir"] = str(value)
        else:
            out[key] = value
    return out


def _plain(value: Any, where: str = "") -> Any:
    """A copy of ``value`` in plain YAML types: numpy numbers (``np.arange`` in a notebook) become Python ones and
    paths strings; anything else stops in one line naming its key."""
    if isinstance(value, dict):
        return {k: _plain(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise W2SError(f"config key '{where}' got a {type(value).__name__}; give a number, string, list or mapping")


def configure(property: str, preset: str | None = "quick", overrides: dict[str, Any] | list[str] | None = None,
           config_file: str | Path | None = None, **settings: Any) -> ExperimentConfig:
    """A validated run config: defaults <- the property's preset <- ``config_file`` <- ``overrides`` and settings
    such as ``seeds``, ``strategies``, ``data_dir``, ``device``, ``precision``, ``log``."""
    return build_config(property, preset, str(config_file) if config_file else None, _overrides(overrides, **settings))


def executor(workers: int = 1, threads: int = 0, per_gpu: int = 1, executor_name: str = "local",
             ray_address: str | None = None, retries: int = 2, ray_timeout: float = 60.0,
             ray_logs: bool = False, yes: bool = False) -> ExecutorOptions:
    """How stages are run (see README "Executors"), checked."""
    opts = ExecutorOptions(executor=executor_name, workers=workers, per_gpu=per_gpu, threads=threads,
                           ray_address=ray_address, retries=retries, ray_timeout=ray_timeout, ray_logs=ray_logs,
                           yes=yes)
    opts.check()
    return opts


def check_writable_dir(path: Path, flag: str) -> None:
    """A folder we will write into: not an existing file, under no file, and writable (tested by writing)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise W2SError(f"{flag} {path} is an existing file, not a folder; choose a folder path")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise W2SError(f"{flag} {path} lies under {parent}, which is a file; choose a folder path")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise W2SError(f"{flag} {path} cannot be written ({parent}: {e.strerror}); choose a writable folder") from None


def _check_outputs(out: Path, cache: Path | None) -> None:
    check_writable_dir(out, "--out")
    check_writable_dir(cache or out / "cache", "--cache")


def check_models(cfg: ExperimentConfig) -> None:
    """Fail before any training if a model cannot be obtained or cannot serve the property's task (and
    materialise bundled ones now)."""
    task = properties.get(cfg.property).task
    for name in dict.fromkeys((cfg.weak_model, cfg.strong_model)):
        models.check(name, task)


def run(property: str, preset: str | None = "quick", *, seeds: list[int] | str | None = None,
        strategies: list[str] | str | None = None, overrides: dict[str, Any] | list[str] | None = None,
        config_file: str | Path | None = None, data_dir: str | Path | None = None, device: str | None = None,
        precision: str | None = None, log: str | None = None, out: str | Path | None = None,
        cache: str | Path | None = None, workers: int = 1, threads: int = 0, per_gpu: int = 1,
        executor_name: str = "local", ray_address: str | None = None, retries: int = 2, ray_timeout: float = 60.0,
        ray_logs: bool = False, yes: bool = False) -> Results:
    """Train the weak, WTS and ceiling models of one property under every strategy and seed (what the cache does
    not hold yet), write ``results.jsonl``, ``summary.json``, ``report.md`` and the figures into ``out`` (default
    ``runs/<property>-<preset>``), and return the results."""
    cfg = configure(property, preset, overrides, config_file, seeds=seeds, strategies=strategies, data_dir=data_dir,
                 device=device, precision=precision, log=log)
    options = executor(workers, threads, per_gpu, executor_name, ray_address, retries, ray_timeout, ray_logs, yes)
    out_dir = Path(out or f"runs/{cfg.property}-{cfg.preset}")
    cache_dir = Path(cache) if cache else None
    _check_outputs(out_dir, cache_dir)
    check_models(cfg)
    runner = run_experiment(cfg, out_dir, cache_dir, options)
    res = load_results(out_dir)
    res.trained, res.cache = list(runner.trained), runner.cache
    return res


def study(spec: str | Path | dict[str, Any] | None = None, *, properties: list[str] | str | None = None,
          preset: str | None = None, seeds: list[int] | str | None = None, strategies: list[str] | str | None = None,
          overrides: dict[str, Any] | list[str] | None = None, data_dir: str | Path | None = None,
          device: str | None = None, precision: str | None = None, log: str | None = None,
          out: str | Path | None = None, cache: str | Path | None = None, workers: int = 1, threads: int = 0,
          per_gpu: int = 1, executor_name: str = "local", ray_address: str | None = None, retries: int = 2,
          ray_timeout: float = 60.0, ray_logs: bool = False, yes: bool = False,
          dry_run: bool = False) -> StudyResults | str:
    """Run a study (a YAML file or the same mapping as a dict; README "Studies") as one stage graph into ``out``
    (default ``runs/<file name>``), and return its results. ``dry_run``: plan only, and return the text that
    ``w2strust study --dry-run`` prints (stages, cached, time left)."""
    if spec is None and not properties:
        raise W2SError("give a study file (e.g. configs/study-smoke.yaml) or --properties fairness,ood,...")
    names = ",".join(properties) if isinstance(properties, list) else properties
    cli = _overrides(overrides, seeds=seeds, strategies=strategies, data_dir=data_dir, device=device,
                     precision=precision, log=log)
    options = executor(workers, threads, per_gpu, executor_name, ray_address, retries, ray_timeout, ray_logs, yes)
    study_file = str(spec) if isinstance(spec, (str, Path)) else None
    spec = _plain(spec) if isinstance(spec, dict) else spec
    _, runs = load_study(spec, names, preset, cli)  # validates every config first
    name = Path(study_file).stem if study_file else f"study-{runs[0].cfg.preset}"
    out_dir = Path(out or f"runs/{name}")
    cache_dir = Path(cache) if cache else out_dir / "cache"
    _check_outputs(out_dir, cache_dir)
    if dry_run:
        return study_dry_run(runs, cache_dir, options)
    for cfg in {id(r.cfg): r.cfg for r in runs}.values():
        check_models(cfg)
    trained = run_study(runs, out_dir, cache_dir, options, study_file)
    res = load_results(out_dir)
    res.trained = trained
    return res


def load_results(path: str | Path) -> Results | StudyResults:
    """The results in a run folder (``Results``) or a study folder (``StudyResults``, every run folder in it)."""
    path = Path(path)
    if (path / "study.json").exists():
        index = load_index(path)
        table = path / "table1.json"
        return StudyResults(path, {r["dir"]: load_results(path / r["dir"]) for r in index["runs"]},
                            json.loads(table.read_text()) if table.exists() else {}, index)
    records = load_records(path)
    summary_path = path / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    cfg = load_yaml(path / "config.yaml") if (path / "config.yaml").exists() else {}
    return Results(path, records, summary, cfg)


def report(*run_dirs: str | Path, out: str | Path | None = None, cache: str | Path | None = None) -> Path | None:
    """Rebuild ``summary.json``, ``report.md`` and the figures of run folders from their results and cache; a
    study folder gets every run's report, Table 1 and the study report again. With several run folders (or
    ``out``), also Table 1 over them in ``out`` (default: the first folder's parent). Returns where Table 1 went."""
    dirs = [Path(d) for d in run_dirs]
    if len(dirs) == 1 and (dirs[0] / "study.json").exists():
        study_dir = dirs[0]
        if out is not None and Path(out).resolve() != study_dir.resolve():
            raise W2SError(f"{study_dir} is a study folder: its reports and Table 1 are rewritten in place, so --out "
                           f"{out} would be ignored; leave --out out, or give its run folders for a Table 1 in --out")
        names = [r["dir"] for r in load_index(study_dir)["runs"]]
        write_study_reports(study_dir, [study_dir / n for n in names], labels=[n.replace("__", ", ") for n in names],
                            cache=Path(cache) if cache else None)
        return study_dir
    for d in dirs:
        check_writable_dir(d, "run folder")
        write_report(d, cache=Path(cache) if cache else None)
    if len(dirs) > 1 or out:
        table_dir = Path(out or dirs[0].parent)
        write_study_table(dirs, table_dir)
        return table_dir
    return None


# ``w2strust/report/`` is also a subpackage, and importing it (this module does, above) binds that module on the
# package as ``w2strust.report``, over the lazy API name: bind this function there instead (README: ``report(...)``).
sys.modules[__name__.rpartition(".")[0]].report = report
