"""The stage graph: weak -> weak labels -> WTS-Naive / WTS-Aux-Loss, plus the strong ceiling.

Every trained model is one *stage* whose artefact (test predictions, weak labels, metrics, and the
weights when ``save_models``) lives in ``<cache>/<stage>-<key>/``. The key is a hash of everything
that determines the stage's result: its own settings and the keys of the stages it depends on. So a
killed run resumes where it stopped, and strategies share what they have in common (the weak model
of ``weak_tft`` and ``weak_wts_tft``, the strong ceiling of all three).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import models, precision, properties, tracking
from .cache import StageCache
from .config import AUTO, ExperimentConfig, save_yaml
from .data.fingerprint import fingerprint
from .io import atomic_write_json, atomic_write_text, content_key, dumps_strict
from .saved_models import link_saved_models
from .scheduler import ExecutorOptions, Job, label, run_jobs
from .stages import load_splits

CACHE_VERSION = 1  # bump when a change to the code invalidates cached artefacts


@dataclass
class Stage:
    kind: str  # "weak" | "ceiling" | "wts"
    seed: int
    spec: dict[str, Any]  # what determines the result (hashed into the key)
    depends: str | None = None  # key of the weak stage whose labels a WTS stage trains on
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = content_key({"kind": self.kind, "seed": self.seed, "spec": self.spec, "depends": self.depends,
                                "version": CACHE_VERSION})

    @property
    def dirname(self) -> str:
        return f"{self.kind}-{self.key}"


def _data_spec(cfg: ExperimentConfig) -> dict[str, Any]:
    d = asdict(cfg.data)
    d.pop("data_dir")  # where the files live does not change the result; what they hold does:
    files = fingerprint(properties.get(cfg.property).data_files(cfg), cfg.resolved_data_dir())
    spec = {"property": cfg.property, "data": d, "extra": cfg.extra, "data_files": files,
            "precision": precision.for_config(cfg)}
    key_extra = properties.get(cfg.property).key_extra
    return {**spec, "semantics": key_extra} if key_extra else spec


def lambdas(cfg: ExperimentConfig, strategy: str) -> tuple[float, float]:
    """(λ_W, λ_WTS) of a strategy."""
    return {"no_tft": (0.0, 0.0), "weak_tft": (cfg.lambda_weak, 0.0),
            "weak_wts_tft": (cfg.lambda_weak, cfg.lambda_wts)}[strategy]


def batching(cfg: ExperimentConfig, aux: bool = False) -> dict[str, str]:
    """How a classifier stage draws its batches, as a stage-spec entry. Default (empty): shuffled length buckets
    (little padding, train.batch_order). Random batches, as the paper and Burns et al. train, where the loss
    depends on which rows share a batch: the auxiliary loss (it hardens each batch to the weak labels' class
    balance, which a bucket of similar-length, hence similar, rows does not have) and batch-level
    regularisers (fairness' covariance over a bucket is a within-bucket covariance, not the paper's penalty).
    Only the departure from the default is written into the key, so stages that keep length buckets keep their
    cached artefacts. Measured effect on fairness: bench/README.md ("Batches and the auxiliary loss")."""
    prop = properties.get(cfg.property)
    if prop.task != "classification" or not (aux or prop.batch_level_regulariser):
        return {}
    return {"batching": "random"}


def _on_cpu(cfg: ExperimentConfig) -> bool:
    from .train import resolve_device

    return resolve_device(cfg.device).type == "cpu"


def dropout_masks(cfg: ExperimentConfig) -> dict[str, str]:
    """Where a classifier stage's dropout masks come from, as a stage-spec entry. On the CPU: numpy's PCG64
    (dropout.PCG64Dropout: PyTorch's CPU generator was 14-17% of a training step; bench/README.md).
    Elsewhere (empty): PyTorch's own dropout. Resolved where the run is planned, as the precision is."""
    if properties.get(cfg.property).task != "classification" or not _on_cpu(cfg):
        return {}
    return {"dropout": "pcg64"}


def cpu_threads(cfg: ExperimentConfig, threads: int | None) -> dict[str, int]:
    """The CPU threads a stage trains with, as a stage-spec entry (``stages.run_stage`` sets exactly this count).
    On the CPU a stage's numbers depend on it: PyTorch splits reductions (sums, LayerNorm and bias gradients)
    between threads and each split rounds differently, so the same stage trained with 1 and with 2 threads gives
    predictions that differ by up to 1.5e-3 in bf16 and 1.2e-7 in fp32 after one epoch (the matmuls agree).
    Keyed, ``--workers 2`` (1 thread each) and one process (2 threads) never mix their stages in a cache, and the
    same command gives the same numbers bit for bit. ``threads`` None: the default executor's (this process).
    Elsewhere (GPUs): empty."""
    if not _on_cpu(cfg):
        return {}
    return {"cpu_threads": int(threads or ExecutorOptions().stage_threads())}


def _loop(cfg: ExperimentConfig, threads: int | None, aux: bool = False) -> dict[str, Any]:
    return {**batching(cfg, aux), **dropout_masks(cfg), **cpu_threads(cfg, threads)}


def weak_stage(cfg: ExperimentConfig, seed: int, lam: float, threads: int | None = None) -> Stage:
    return Stage("weak", seed, {**_data_spec(cfg), "model": models.stage_id(cfg.weak_model),
                                "train": asdict(cfg.weak_train), "lambda": lam, **_loop(cfg, threads)})


def ceiling_stage(cfg: ExperimentConfig, seed: int, lam: float, threads: int | None = None) -> Stage:
    return Stage("ceiling", seed, {**_data_spec(cfg), "model": models.stage_id(cfg.strong_model),
                                   "train": asdict(cfg.strong_train), "lambda": lam, **_loop(cfg, threads)})


def wts_stage(cfg: ExperimentConfig, weak: Stage, lam: float, alpha_max: float, threads: int | None = None) -> Stage:
    aux = ({"alpha_max": alpha_max, "warmup": cfg.aux_warmup, "buffer": cfg.aux_buffer, "prior": "mean_soft_label"}
           if alpha_max > 0 else {})  # prior: the hardening's class balance (argmax share before; key changed)
    return Stage("wts", weak.seed, {**_data_spec(cfg), "model": models.stage_id(cfg.strong_model),
                                    "train": asdict(cfg.strong_train), "lambda": lam, "aux": aux,
                                    **_loop(cfg, threads, aux=bool(aux))}, depends=weak.key)


def plan(cfg: ExperimentConfig, threads: int | None = None) -> tuple[list[Stage], list[dict[str, Any]]]:
    """All unique stages in dependency order, and one record stub per (strategy, role, seed). ``threads``: the
    CPU threads per stage of the executor that will run them (``ExecutorOptions.stage_threads``)."""
    stages: dict[str, Stage] = {}
    records: list[dict[str, Any]] = []
    roles = properties.get(cfg.property).roles

    def add(stage: Stage) -> Stage:
        return stages.setdefault(stage.key, stage)

    for seed in cfg.seeds:
        # lambda_ceiling: auto trains every candidate (ordinary stages, cached and shared like any other); the
        # ceiling records point at all of them until Runner.run picks one from their metrics (select_ceiling).
        ceilings = {lam: add(ceiling_stage(cfg, seed, lam, threads)) for lam in cfg.ceiling_candidates()}
        for strategy in cfg.strategies:
            lam_w, lam_wts = lambdas(cfg, strategy)
            weak = add(weak_stage(cfg, seed, lam_w, threads))
            by_role = {"weak": weak}
            for role, alpha in (("wts_naive", 0.0), ("wts_aux", cfg.alpha_max)):
                if role in roles:
                    by_role[role] = add(wts_stage(cfg, weak, lam_wts, alpha, threads))
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


def select_ceiling(cfg: ExperimentConfig, stubs: list[dict[str, Any]], load_meta, out: Path) -> dict[str, Any]:
    """lambda_ceiling: auto, once every candidate ceiling is trained: pick the ceiling's λ from their test metrics
    (mean over seeds) by the sweep rule, point the ceiling records at it, record the chosen λ in every record,
    and keep the curve in ``<out>/ceiling.json`` (the report draws it). ``load_meta(dirname)`` reads a stage."""
    from .sweep import trade_off

    ceilings = [s for s in stubs if s["role"] == "strong_ceiling"]
    per_seed = {s["seed"]: s["candidates"] for s in ceilings}
    lams = list(next(iter(per_seed.values())))
    metrics = {lam: [load_meta(c[lam])["metrics"] for c in per_seed.values()] for lam in lams}
    result = trade_off(properties.get(cfg.property), "strong_ceiling", metrics, cfg.ceiling_max_drop)
    chosen = result["suggested_lambda"]
    for s in ceilings:
        s["artefact"] = s.pop("candidates")[chosen]
    for s in stubs:
        s["lambda_ceiling"] = chosen
    atomic_write_json(Path(out) / "ceiling.json", result)
    return result


class Runner:
    """Plans one experiment and has its stages run by the scheduler; writes ``results.jsonl``."""

    def __init__(self, cfg: ExperimentConfig, out: Path, cache: Path | None = None,
                 options: ExecutorOptions | None = None):
        self.cfg = cfg
        self.out = Path(out)
        self.cache = Path(cache) if cache else self.out / "cache"
        self.options = options or ExecutorOptions()
        self.trained: list[str] = []  # stage dirs trained by this runner (the tests read it)

    def run(self) -> list[dict[str, Any]]:
        self.out.mkdir(parents=True, exist_ok=True)
        save_yaml(self.cfg, self.out / "config.yaml")
        stages, stubs = plan(self.cfg, self.options.stage_threads())
        todo = [s for s in stages if not (self.cache / s.dirname / "meta.json").exists()]
        if todo:  # a data file that cannot be read fails here, in one line, before any progress bar
            load_splits(self.cfg, todo[0].seed)
        tracker = tracking.open_tracker(self.cfg.log, self.out)  # a missing optional package stops us before training
        self.execute_all(stages, desc=f"{self.cfg.property} stages")
        return write_results(self.out, self.cfg, stubs, self.cache, tracker)

    def execute_all(self, stages: list[Stage], desc: str) -> None:
        """Bring every stage into the cache (training those that are missing or damaged)."""
        jobs = [Job(s, self.cfg, label(self.cfg, s)) for s in stages]
        trained = run_jobs(jobs, self.cache, self.options, log_path=self.out / "stages.log", desc=desc)
        self.trained += [t["stage"] for t in trained]

    def load_meta(self, stage: Stage | str) -> dict[str, Any]:
        return StageCache(self.cache).load_meta(stage.dirname if isinstance(stage, Stage) else stage)


def write_results(out: Path, cfg: ExperimentConfig, stubs: list[dict[str, Any]], cache: Path,
                  tracker=None) -> list[dict[str, Any]]:
    """``results.jsonl``: the record stubs of a plan with each artefact's test metrics filled in (and, for
    ``lambda_ceiling: auto``, the ceiling chosen among its trained candidates); then the readable paths of
    saved models (``save_models``) and the experiment tracker's logs (``log``; opened here if not given)."""
    store = StageCache(cache)
    if cfg.lambda_ceiling == AUTO:
        select_ceiling(cfg, stubs, store.load_meta, out)
    records = [{**stub, "metrics": store.load_meta(stub["artefact"])["metrics"]} for stub in stubs]
    atomic_write_text(Path(out) / "results.jsonl", "".join(dumps_strict(r) + "\n" for r in records))
    if cfg.save_models:
        link_saved_models(Path(out), cache, records)
    tracker = tracker or tracking.open_tracker(cfg.log, Path(out))
    if tracker is not None:
        tracker.log_run(cfg, records, store.load_meta)
    return records


def run_experiment(cfg: ExperimentConfig, out: Path, cache: Path | None = None,
                   options: ExecutorOptions | None = None) -> Runner:
    runner = Runner(cfg, out, cache, options)
    runner.run()
    from .report import write_report

    write_report(out, cache=runner.cache)
    return runner
