"""The stage graph: weak -> weak labels -> WTS-Naive / WTS-Aux-Loss, plus the strong ceiling.

Every trained model is one *stage* whose artefact (test predictions, weak labels, metrics, and the
weights when ``save_models``) lives in ``<cache>/<stage>-<key>/``. The key is a hash of everything
that determines the stage's result: its own settings and the keys of the stages it depends on. So a
killed run resumes where it stopped, and strategies share what they have in common (the weak model
of ``weak_tft`` and ``weak_wts_tft``, the strong ceiling of all three).
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .. import models, properties
from ..config.schema import AUTO, ExperimentConfig, save_yaml
from ..data.fingerprint import fingerprint
from ..engine.cache import StageCache
from ..engine.run_stage import load_splits, required_files
from ..engine.scheduler import ExecutorOptions, Job, label, run_jobs
from ..engine.stage import Stage
from ..io import atomic_write_json, atomic_write_text, dumps_strict
from ..properties.base import TrustProperty
from ..report.run_report import forget_report, write_report
from ..training.device import resolve_device
from ..training.precision import for_task
from . import tracking
from .ceiling_rule import trade_off
from .saved_models import link_saved_models


class StagePlanner:
    """Builds a run's stages. The property and the device are resolved once, here, and every stage spec is written
    from them: the data fingerprint, the precision, and the training loop's settings that change numbers (batching,
    dropout masks, CPU threads). ``threads``: the CPU threads per stage of the executor that will run them
    (``ExecutorOptions.stage_threads``); None = this process' default executor."""

    def __init__(self, cfg: ExperimentConfig, threads: int | None = None):
        self.cfg = cfg
        self.prop: TrustProperty = properties.get(cfg.property)
        self.device: torch.device = resolve_device(cfg.device)
        self.threads = threads
        self._data: dict[str, Any] | None = None
        self._train = {"weak": asdict(cfg.weak_train), "strong": asdict(cfg.strong_train)}  # once: asdict is slow
        self._stages: dict[tuple, Stage] = {}  # strategies share stages: each is built and hashed once per run

    def data_spec(self) -> dict[str, Any]:
        """What every stage of the run shares: the data settings and files, the precision, the property's semantics."""
        if self._data is None:
            cfg, prop = self.cfg, self.prop
            d = asdict(cfg.data)
            d.pop("data_dir")  # where the files live does not change the result; what they hold does:
            files = fingerprint(prop.data_files(cfg), cfg.resolved_data_dir())
            spec = {"property": cfg.property, "data": d, "extra": cfg.extra, "data_files": files,
                    "precision": for_task(cfg.precision, prop.task, self.device)}
            if prop.task == "generation":
                # a causal-LM stage generates in batches of eval_batch_size: the weak model's sampled generations (the
                # WTS models' training text) draw from one RNG stream whose use follows the batches, and left padding
                # changes the greedy continuations of the attacks. A classifier's predictions do not depend on it
                # (rows batched by length, padding masked: identical bit for bit at 7 and 64 rows per batch).
                spec["eval_batch_size"] = cfg.eval_batch_size
            self._data = {**spec, "semantics": prop.key_extra} if prop.key_extra else spec
        return self._data

    def loop(self, aux: bool = False) -> dict[str, Any]:
        return {**batching(self.prop, aux), **dropout_masks(self.prop, self.device),
                **cpu_threads(self.device, self.threads)}

    def _once(self, key: tuple, build) -> Stage:
        """The stage for ``key``, built (and its key hashed) on the first call only: strategies share stages."""
        if key not in self._stages:
            self._stages[key] = build()
        return self._stages[key]

    def weak(self, seed: int, lam: float) -> Stage:
        return self._once(("weak", seed, lam), lambda: Stage("weak", seed, {
            **self.data_spec(), "model": models.stage_id(self.cfg.weak_model), "train": dict(self._train["weak"]),
            "lambda": lam, **self.loop()}))

    def ceiling(self, seed: int, lam: float) -> Stage:
        return self._once(("ceiling", seed, lam), lambda: Stage("ceiling", seed, {
            **self.data_spec(), "model": models.stage_id(self.cfg.strong_model),
            "train": dict(self._train["strong"]), "lambda": lam, **self.loop()}))

    def wts(self, weak: Stage, lam: float, alpha_max: float) -> Stage:
        cfg = self.cfg
        aux = ({"alpha_max": alpha_max, "warmup": cfg.aux_warmup, "buffer": cfg.aux_buffer,
                "prior": "mean_soft_label"}
               if alpha_max > 0 else {})  # prior: the hardening's class balance (argmax share before; key changed)
        return self._once(("wts", weak.key, lam, alpha_max), lambda: Stage("wts", weak.seed, {
            **self.data_spec(), "model": models.stage_id(cfg.strong_model), "train": dict(self._train["strong"]),
            "lambda": lam, "aux": aux, **self.loop(aux=bool(aux))}, depends=weak.key))

    def job(self, stage: Stage) -> Job:
        """The stage as the scheduler's job: with its label and the files that make it usable once cached."""
        return Job(stage, self.cfg, label(self.cfg, stage),
                   required_files(self.prop.task, stage.kind, self.cfg.save_models))


def lambdas(cfg: ExperimentConfig, strategy: str) -> tuple[float, float]:
    """(λ_W, λ_WTS) of a strategy."""
    return {"no_tft": (0.0, 0.0), "weak_tft": (cfg.lambda_weak, 0.0),
            "weak_wts_tft": (cfg.lambda_weak, cfg.lambda_wts)}[strategy]


def batching(prop: TrustProperty, aux: bool = False) -> dict[str, str]:
    """How a classifier stage draws its batches, as a stage-spec entry. Default (empty): shuffled length buckets
    (little padding, training.batches.batch_order). Random batches, as the paper and Burns et al. train, where the
    loss depends on which rows share a batch: the auxiliary loss (it hardens each batch to the weak labels' class
    balance, which a bucket of similar-length, hence similar, rows does not have) and batch-level
    regularisers (fairness' covariance over a bucket is a within-bucket covariance, not the paper's penalty).
    Only the departure from the default is written into the key, so stages that keep length buckets keep their
    cached artefacts. Measured effect on fairness: bench/README.md ("Batches and the auxiliary loss")."""
    if prop.task != "classification" or not (aux or prop.batch_level_regulariser):
        return {}
    return {"batching": "random"}


def dropout_masks(prop: TrustProperty, device: torch.device) -> dict[str, str]:
    """Where a classifier stage's dropout masks come from, as a stage-spec entry. On the CPU: numpy's PCG64
    (training.dropout.PCG64Dropout: PyTorch's CPU generator was 14-17% of a training step; bench/README.md).
    Elsewhere (empty): PyTorch's own dropout. Resolved where the run is planned, as the precision is."""
    if prop.task != "classification" or device.type != "cpu":
        return {}
    return {"dropout": "pcg64"}


def cpu_threads(device: torch.device, threads: int | None) -> dict[str, int]:
    """The CPU threads a stage trains with, as a stage-spec entry (``engine.run_stage`` sets exactly this count).
    On the CPU a stage's numbers depend on it: PyTorch splits reductions (sums, LayerNorm and bias gradients)
    between threads and each split rounds differently, so the same stage trained with 1 and with 2 threads gives
    predictions that differ by up to 1.5e-3 in bf16 and 1.2e-7 in fp32 after one epoch (the matmuls agree).
    Keyed, ``--workers 2`` (1 thread each) and one process (2 threads) never mix their stages in a cache, and the
    same command gives the same numbers bit for bit. ``threads`` None: the default executor's (this process).
    Elsewhere (GPUs): empty."""
    if device.type != "cpu":
        return {}
    return {"cpu_threads": int(threads or ExecutorOptions().stage_threads())}


def plan(cfg: ExperimentConfig, threads: int | None = None) -> tuple[list[Stage], list[dict[str, Any]]]:
    """All unique stages in dependency order, and one record stub per (strategy, role, seed). ``threads``: the
    CPU threads per stage of the executor that will run them (``ExecutorOptions.stage_threads``)."""
    return _plan(StagePlanner(cfg, threads))


def plan_jobs(cfg: ExperimentConfig, threads: int | None = None) -> tuple[list[Job], list[dict[str, Any]]]:
    """``plan`` as the scheduler's jobs (each with its label and the files it must leave)."""
    planner = StagePlanner(cfg, threads)
    stages, stubs = _plan(planner)
    return [planner.job(s) for s in stages], stubs


def _plan(planner: StagePlanner) -> tuple[list[Stage], list[dict[str, Any]]]:
    cfg = planner.cfg
    stages: dict[str, Stage] = {}
    records: list[dict[str, Any]] = []
    roles = planner.prop.roles

    def add(stage: Stage) -> Stage:
        return stages.setdefault(stage.key, stage)

    for seed in cfg.seeds:
        # lambda_ceiling: auto trains every candidate (ordinary stages, cached and shared like any other); the
        # ceiling records point at all of them until Runner.run picks one from their metrics (select_ceiling).
        ceilings = {lam: add(planner.ceiling(seed, lam)) for lam in cfg.ceiling_candidates(planner.prop.lambda_grid)}
        for strategy in cfg.strategies:
            lam_w, lam_wts = lambdas(cfg, strategy)
            weak = add(planner.weak(seed, lam_w))
            by_role = {"weak": weak}
            for role, alpha in (("wts_naive", 0.0), ("wts_aux", cfg.alpha_max)):
                if role in roles:
                    by_role[role] = add(planner.wts(weak, lam_wts, alpha))
            for role in roles:
                record = {
                    "property": cfg.property, "strategy": strategy, "role": role, "seed": seed,
                    "weak_model": cfg.weak_model, "strong_model": cfg.strong_model,
                    "lambda_weak": lam_w, "lambda_wts": lam_wts, "lambda_ceiling": cfg.lambda_ceiling,
                    "alpha_max": cfg.alpha_max if role == "wts_aux" else 0.0,
                }
                if role != "strong_ceiling":
                    record["artefact"] = by_role[role].dirname
                elif len(ceilings) == 1 and cfg.lambda_ceiling != AUTO:
                    record["artefact"] = next(iter(ceilings.values())).dirname
                else:
                    record["candidates"] = {lam: st.dirname for lam, st in ceilings.items()}
                records.append(record)
    order = {"weak": 0, "ceiling": 1, "wts": 2}
    return sorted(stages.values(), key=lambda s: (s.seed, order[s.kind])), records


def select_ceiling(cfg: ExperimentConfig, prop: TrustProperty, stubs: list[dict[str, Any]], load_meta,
                   out: Path) -> dict[str, Any]:
    """lambda_ceiling: auto, once every candidate ceiling is trained: pick the ceiling's λ from their test metrics
    (mean over seeds) by the rule (``ceiling_rule.py``), point the ceiling records at it, record the chosen λ in every
    record, and keep the curve in ``<out>/ceiling.json`` (the report draws it). ``load_meta(dirname)`` reads a stage."""
    ceilings = [s for s in stubs if s["role"] == "strong_ceiling"]
    per_seed = {s["seed"]: s["candidates"] for s in ceilings}
    lams = list(next(iter(per_seed.values())))
    metrics = {lam: [load_meta(c[lam])["metrics"] for c in per_seed.values()] for lam in lams}
    result = trade_off(prop, "strong_ceiling", metrics, cfg.ceiling_max_drop)
    chosen = result["suggested_lambda"]
    for s in ceilings:
        s["artefact"] = s.pop("candidates")[chosen]
    for s in stubs:
        s["lambda_ceiling"] = chosen
    atomic_write_json(Path(out) / "ceiling.json", result)
    return result


def other_threads_hint(cfgs: list[ExperimentConfig], cache: Path, threads: int) -> str | None:
    """On the CPU a stage's key holds its thread count, so a cache filled with ``--threads 1`` serves nothing to a
    run with 2 threads, which would train every stage again (hours for a study). Where the cache holds more of these
    configs' stages under another count, one line saying which; else None (on a GPU the keys hold no count)."""
    def stages(t: int) -> list[Stage]:
        return [s for cfg in cfgs for s in _plan(StagePlanner(cfg, t))[0]]

    def cached(planned: list[Stage]) -> int:
        return sum((Path(cache) / n / "meta.json").exists() for n in {s.dirname for s in planned})

    if not Path(cache).is_dir():
        return None
    mine = stages(threads)
    if not any("cpu_threads" in s.spec for s in mine):
        return None
    cores = os.cpu_count() or 1
    counts = sorted({t for t in (1, 2, 4, 8, 16, 32, 64, cores) if t <= cores} - {threads})  # a few plans, not 64
    here = cached(mine)
    best, t = max(((cached(stages(t)), t) for t in counts), default=(0, 0))
    if best <= here:
        return None
    return (f"note: {Path(cache)} holds {best} of these stages trained with --threads {t} and {here} with "
            f"{threads} thread(s), the count this run uses (a CPU stage's key holds it: the numbers depend on it); "
            f"add --threads {t} to use them instead of training again")


class Runner:
    """Plans one experiment and has its stages run by the scheduler; writes ``results.jsonl``."""

    def __init__(self, cfg: ExperimentConfig, out: Path, cache: Path | None = None,
                 options: ExecutorOptions | None = None):
        self.cfg = cfg
        self.out = Path(out)
        self.cache = Path(cache) if cache else self.out / "cache"
        self.options = options or ExecutorOptions()
        self.planner = StagePlanner(cfg, self.options.stage_threads())
        self.trained: list[str] = []  # stage dirs trained by this runner (the tests read it)

    def run(self) -> list[dict[str, Any]]:
        self.out.mkdir(parents=True, exist_ok=True)
        stages, stubs = _plan(self.planner)
        todo = [s for s in stages if not (self.cache / s.dirname / "meta.json").exists()]
        if todo:  # a data file that cannot be read fails here, in one line, before any progress bar
            load_splits(self.cfg, self.planner.prop, todo[0].seed, todo[0].spec.get("data_files"))
            hint = other_threads_hint([self.cfg], self.cache, self.options.stage_threads())
            if hint:
                print(hint, file=sys.stderr)
        tracker = tracking.open_tracker(self.cfg.log, self.out)  # a missing optional package stops us before training
        self.execute_all(stages, desc=f"{self.cfg.property} stages")
        # with the results, not before training: a run that stops early must not leave another run's
        # results.jsonl under its config (report and curves read the two together; the study does the same)
        save_yaml(self.cfg, self.out / "config.yaml")
        return write_results(self.out, self.cfg, stubs, self.cache, tracker, self.planner.prop)

    def execute_all(self, stages: list[Stage], desc: str) -> None:
        """Bring every stage into the cache (training those that are missing or damaged)."""
        jobs = [self.planner.job(s) for s in stages]
        trained = run_jobs(jobs, self.cache, self.options, log_path=self.out / "stages.log", desc=desc)
        self.trained += [t["stage"] for t in trained]

    def load_meta(self, stage: Stage | str) -> dict[str, Any]:
        return StageCache(self.cache).load_meta(stage.dirname if isinstance(stage, Stage) else stage)


def write_results(out: Path, cfg: ExperimentConfig, stubs: list[dict[str, Any]], cache: Path,
                  tracker=None, prop: TrustProperty | None = None) -> list[dict[str, Any]]:
    """``results.jsonl``: the record stubs of a plan with each artefact's test metrics filled in (and, for
    ``lambda_ceiling: auto``, the ceiling chosen among its trained candidates); then the readable paths of
    saved models (``save_models``) and the experiment tracker's logs (``log``; opened here if not given)."""
    store = StageCache(cache)
    if cfg.lambda_ceiling == AUTO:
        select_ceiling(cfg, prop or properties.get(cfg.property), stubs, store.load_meta, out)
    else:  # a folder that held an auto run: its selection is not this run's (the report reads ceiling.json)
        for stale in ("ceiling.json", "ceiling-tradeoff.png"):
            (Path(out) / stale).unlink(missing_ok=True)
    records = [{**stub, "metrics": store.load_meta(stub["artefact"])["metrics"]} for stub in stubs]
    forget_report(Path(out))
    atomic_write_text(Path(out) / "results.jsonl", "".join(dumps_strict(r) + "\n" for r in records))
    record_cache(Path(out), cache)
    if cfg.save_models:
        link_saved_models(Path(out), cache, records)
    tracker = tracker or tracking.open_tracker(cfg.log, Path(out))
    if tracker is not None:
        tracker.log_run(cfg, records, store.load_meta)
    return records


def record_cache(out: Path, cache: Path) -> None:
    """``<out>/run.json``: where this run's stages are (``--cache`` may be anywhere), so that ``w2strust report`` finds
    the predictions it needs without being told. Relative to ``out``: a run folder copied or moved with its cache
    inside it still points at its own copy."""
    atomic_write_json(out / "run.json", {"cache": os.path.relpath(Path(cache).resolve(), Path(out).resolve())})


def run_experiment(cfg: ExperimentConfig, out: Path, cache: Path | None = None,
                   options: ExecutorOptions | None = None) -> Runner:
    runner = Runner(cfg, out, cache, options)
    runner.run()
    write_report(out, cache=runner.cache)
    return runner
