"""The stage graph: weak -> weak labels -> WTS-Naive / WTS-Aux-Loss, plus the strong ceiling.

Every trained model is one *stage* whose artefact (test predictions, weak labels, metrics, and the
weights when ``save_models``) lives in ``<cache>/<stage>-<key>/``. The key is a hash of everything
that determines the stage's result: its own settings and the keys of the stages it depends on. So a
killed run resumes where it stopped, and strategies share what they have in common (the weak model
of ``weak_tft`` and ``weak_wts_tft``, the strong ceiling of all three).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import concatenate_datasets
from tqdm.auto import tqdm

from . import audit, models, properties, tracking
from .config import AUTO, ExperimentConfig, save_yaml
from .data import Splits
from .io import atomic_write_json, atomic_write_text, content_key
from .losses import AuxConfidenceLoss
from .saved_models import link_saved_models
from .train import predict_proba, resolve_device, train_classifier

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
    d.pop("data_dir")  # where the files live does not change the result
    spec = {"property": cfg.property, "data": d, "extra": cfg.extra}
    key_extra = properties.get(cfg.property).key_extra
    return {**spec, "semantics": key_extra} if key_extra else spec  # other properties keep their keys


def lambdas(cfg: ExperimentConfig, strategy: str) -> tuple[float, float]:
    """(λ_W, λ_WTS) of a strategy."""
    return {"no_tft": (0.0, 0.0), "weak_tft": (cfg.lambda_weak, 0.0),
            "weak_wts_tft": (cfg.lambda_weak, cfg.lambda_wts)}[strategy]


def weak_stage(cfg: ExperimentConfig, seed: int, lam: float) -> Stage:
    return Stage("weak", seed, {**_data_spec(cfg), "model": models.stage_id(cfg.weak_model),
                                "train": asdict(cfg.weak_train), "lambda": lam})


def ceiling_stage(cfg: ExperimentConfig, seed: int, lam: float) -> Stage:
    return Stage("ceiling", seed, {**_data_spec(cfg), "model": models.stage_id(cfg.strong_model),
                                   "train": asdict(cfg.strong_train), "lambda": lam})


def wts_stage(cfg: ExperimentConfig, weak: Stage, lam: float, alpha_max: float) -> Stage:
    aux = {"alpha_max": alpha_max, "warmup": cfg.aux_warmup, "buffer": cfg.aux_buffer} if alpha_max > 0 else {}
    return Stage("wts", weak.seed, {**_data_spec(cfg), "model": models.stage_id(cfg.strong_model),
                                    "train": asdict(cfg.strong_train), "lambda": lam, "aux": aux}, depends=weak.key)


def plan(cfg: ExperimentConfig) -> tuple[list[Stage], list[dict[str, Any]]]:
    """All unique stages in dependency order, and one record stub per (strategy, role, seed)."""
    stages: dict[str, Stage] = {}
    records: list[dict[str, Any]] = []
    roles = properties.get(cfg.property).roles

    def add(stage: Stage) -> Stage:
        return stages.setdefault(stage.key, stage)

    for seed in cfg.seeds:
        # lambda_ceiling: auto trains every candidate (ordinary stages, cached and shared like any other); the
        # ceiling records point at all of them until Runner.run picks one from their metrics (select_ceiling).
        ceilings = {lam: add(ceiling_stage(cfg, seed, lam)) for lam in cfg.ceiling_candidates()}
        for strategy in cfg.strategies:
            lam_w, lam_wts = lambdas(cfg, strategy)
            weak = add(weak_stage(cfg, seed, lam_w))
            by_role = {"weak": weak}
            for role, alpha in (("wts_naive", 0.0), ("wts_aux", cfg.alpha_max)):
                if role in roles:
                    by_role[role] = add(wts_stage(cfg, weak, lam_wts, alpha))
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
    """Executes a plan against a cache folder; every artefact is written atomically."""

    def __init__(self, cfg: ExperimentConfig, out: Path, cache: Path | None = None):
        self.cfg = cfg
        self.out = Path(out)
        self.cache = Path(cache) if cache else self.out / "cache"
        self.prop = properties.get(cfg.property)
        self.device = resolve_device(cfg.device)
        self._splits: dict[int, Splits] = {}
        self.trained: list[str] = []  # stage dirs trained in this process (the tests read it)

    def splits(self, seed: int) -> Splits:
        if seed not in self._splits:
            self._splits = {seed: self.prop.load_splits(self.cfg, seed)}  # keep one seed in memory
        return self._splits[seed]

    def run(self) -> list[dict[str, Any]]:
        self.out.mkdir(parents=True, exist_ok=True)
        save_yaml(self.cfg, self.out / "config.yaml")
        stages, stubs = plan(self.cfg)
        tracker = tracking.open_tracker(self.cfg.log, self.out)  # a missing optional package stops us before training
        self.execute_all(stages, desc=f"{self.cfg.property} stages")
        if self.cfg.lambda_ceiling == AUTO:
            select_ceiling(self.cfg, stubs, self.load_meta, self.out)
        records = [{**stub, "metrics": self.load_meta(stub["artefact"])["metrics"]} for stub in stubs]
        atomic_write_text(self.out / "results.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        if self.cfg.save_models:
            link_saved_models(self.out, self.cache, records)
        if tracker is not None:
            tracker.log_run(self.cfg, records, self.load_meta)
        return records

    def execute_all(self, stages: list[Stage], desc: str) -> None:
        """Train every stage that is not in the cache yet (in the given, dependency-respecting order)."""
        with tqdm(stages, desc=desc, unit="model", dynamic_ncols=True) as bar:
            for stage in bar:
                bar.set_postfix_str(f"seed {stage.seed} {stage.kind} {stage.spec['model']} λ={stage.spec['lambda']}")
                done = self.cache / stage.dirname
                # a stage cached without its weights is retrained when the weights are asked for
                if not (done / "meta.json").exists() or (self.cfg.save_models and not (done / "model").is_dir()):
                    self._execute(stage)

    def load_meta(self, stage: Stage | str) -> dict[str, Any]:
        dirname = stage.dirname if isinstance(stage, Stage) else stage
        return json.loads((self.cache / dirname / "meta.json").read_text())

    # ------------------------------------------------------------------ one stage
    def _setup(self, stage: Stage):
        """What every stage starts from: its seed's splits, its role's model name and training config."""
        is_weak = stage.kind == "weak"
        name = self.cfg.weak_model if is_weak else self.cfg.strong_model
        tcfg = self.cfg.weak_train if is_weak else self.cfg.strong_train
        return self.splits(stage.seed), is_weak, name, tcfg, time.time()

    def _execute(self, stage: Stage) -> None:
        if self.prop.task == "generation":
            return self._execute_lm(stage)
        cfg, prop = self.cfg, self.prop
        splits, is_weak, name, tcfg, started = self._setup(stage)
        torch.manual_seed(stage.seed)  # classifier-head initialisation
        model, tok = models.build_classifier(name, prop.num_labels)
        make_loss = None
        if stage.kind == "wts":
            weak_labels = np.load(self.cache / f"weak-{stage.depends}" / "weak_labels.npy")
            ds, targets = splits.wts, weak_labels
            aux = stage.spec["aux"]
            if aux:
                positive_rate = float((weak_labels.argmax(-1) == 1).mean())

                def make_loss(total_steps: int) -> AuxConfidenceLoss:
                    return AuxConfidenceLoss(total_steps, aux["alpha_max"], aux["warmup"], positive_rate, aux["buffer"])
        else:
            ds = splits.weak if is_weak else concatenate_datasets([splits.weak, splits.wts])
            targets = np.eye(prop.num_labels, dtype=np.float32)[np.asarray(ds["label"])]
        desc = f"seed {stage.seed} {stage.kind}{'-aux' if stage.spec.get('aux') else ''} {name}"
        log = train_classifier(model, tok, ds, targets, tcfg, prop, stage.spec["lambda"], stage.seed, self.device,
                               make_task_loss=make_loss, desc=desc)

        def predict(dataset, column: str = "text") -> np.ndarray:
            return predict_proba(model, tok, dataset, column, tcfg.max_length, cfg.eval_batch_size, self.device,
                                 desc=f"{desc} eval")

        preds = prop.predict(predict, splits)
        metrics = prop.metrics(preds, prop.test_columns(splits))
        meta: dict[str, Any] = {"stage": stage.kind, "seed": stage.seed, "spec": stage.spec, "depends": stage.depends,
                                "model": name, "train": log, "metrics": metrics,
                                "audit": audit.collect(self.device, model, models.provenance(name), started)}

        def write(tmp: Path) -> None:
            np.savez_compressed(tmp / "preds.npz", **preds)
            if is_weak:  # stage 2: the weak model's soft labels on D_WTS
                weak_labels = predict(splits.wts)
                np.save(tmp / "weak_labels.npy", weak_labels)
                meta["weak_label_accuracy"] = float((weak_labels.argmax(-1) == np.asarray(splits.wts["label"])).mean())
            if cfg.save_models:
                model.save_pretrained(tmp / "model", safe_serialization=True)
                tok.save_pretrained(tmp / "model")

        self._commit(stage, meta, write, started, desc)
        gc.collect()  # the model goes out of scope here: release its memory before the next stage

    def _execute_lm(self, stage: Stage) -> None:
        """A causal-LM stage (task = "generation"): fine-tune (DP when λ = ε > 0), evaluate leakage on the
        model's own training e-mails, and for the weak stage generate the WTS training text."""
        from .train_lm import train_causal_lm

        cfg, prop = self.cfg, self.prop
        splits, is_weak, name, tcfg, started = self._setup(stage)
        weak_outputs = None
        if stage.kind == "wts":
            weak_outputs = json.loads((self.cache / f"weak-{stage.depends}" / "weak_outputs.json").read_text())
        texts = prop.lm_train_texts(stage.kind, splits, weak_outputs)
        model, tok = models.build_causal_lm(name)
        desc = f"seed {stage.seed} {stage.kind} {name}"
        model, log = train_causal_lm(model, tok, texts, tcfg, prop.lm_options(cfg), stage.spec["lambda"], stage.seed,
                                     self.device, desc=desc)
        preds, metrics = prop.lm_evaluate(model, tok, stage.kind, splits, cfg, self.device, tcfg.max_length)
        metrics["epsilon"] = log.get("epsilon", 0.0)  # the ε the accountant reports as spent (0 = no DP)
        meta: dict[str, Any] = {"stage": stage.kind, "seed": stage.seed, "spec": stage.spec, "depends": stage.depends,
                                "model": name, "train": log, "metrics": metrics,
                                "audit": audit.collect(self.device, model, models.provenance(name), started)}

        def write(tmp: Path) -> None:
            np.savez_compressed(tmp / "preds.npz", **preds)
            if is_weak:  # stage 2: the weak model's generations are the WTS training data (the user's own cache)
                atomic_write_json(tmp / "weak_outputs.json", prop.lm_weak_outputs(model, tok, splits, cfg, self.device,
                                                                                  stage.seed))
            if cfg.save_models:
                model.save_pretrained(tmp / "model", safe_serialization=True)
                tok.save_pretrained(tmp / "model")

        self._commit(stage, meta, write, started, desc)
        gc.collect()  # the model goes out of scope here: release its memory before the next stage

    def _commit(self, stage: Stage, meta: dict[str, Any], write, started: float, desc: str) -> None:
        """Write a stage's files into a hidden temp folder, then rename it into place (whole or not at all)."""
        tmp = Path(tempfile.mkdtemp(prefix=f".{stage.dirname}-", dir=self._ensure_cache()))
        try:
            write(tmp)
            meta["seconds"] = round(time.time() - started, 1)
            atomic_write_json(tmp / "meta.json", meta)
            final = self.cache / stage.dirname
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.trained.append(stage.dirname)
        tqdm.write(f"  {stage.dirname}: {desc} trained in {meta['seconds']:.0f}s  "
                   + " ".join(f"{k}={v:.3f}" for k, v in meta["metrics"].items() if "/" not in k))

    def _ensure_cache(self) -> Path:
        self.cache.mkdir(parents=True, exist_ok=True)
        return self.cache


def run_experiment(cfg: ExperimentConfig, out: Path, cache: Path | None = None) -> Runner:
    runner = Runner(cfg, out, cache)
    runner.run()
    from .report import write_report

    write_report(out, cache=runner.cache)
    return runner
