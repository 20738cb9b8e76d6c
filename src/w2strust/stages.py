"""One stage as a pure function: ``run_stage(cfg, stage, cache_root, device)`` trains (or finds) one model
and leaves its verified artefact in the cache. Any executor calls it anywhere: in this process, in a
local worker process, or in a Ray task on another node; it needs only the config, the stage and a
cache folder every caller sees. Everything that changes the result is in ``stage.key``.

The stage's lock is held from the cache check to the commit, so two processes never train one stage
at once; a damaged artefact is reported in one line naming its path and retrained.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .cache import StageCache
from .finite import check_arrays, check_metrics

if TYPE_CHECKING:
    from .config import ExperimentConfig
    from .pipeline import Stage

_SPLITS: dict[str, Any] = {}  # (property, data settings, seed) -> Splits; one entry, the last one used


def required_files(cfg: ExperimentConfig, kind: str) -> tuple[str, ...]:
    """The files a later stage or the report reads from a stage of this kind (and the weights, when asked
    for: a stage cached without them is retrained under ``save_models``)."""
    from . import properties

    weights = ("model/config.json",) if cfg.save_models else ()
    if kind != "weak":
        return ("preds.npz", *weights)
    generation = properties.get(cfg.property).task == "generation"
    return ("preds.npz", "weak_outputs.json" if generation else "weak_labels.npy", *weights)


def run_stage(cfg: ExperimentConfig, stage: Stage, cache_root: str, device: str | None = None,
              threads: int | None = None) -> dict[str, Any]:
    """Make sure ``stage`` is in the cache (training it if needed); return what happened (for the stage log)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    cache = StageCache(cache_root)
    need = required_files(cfg, stage.kind)
    started = time.time()
    info = {"stage": stage.dirname, "worker": f"{socket.gethostname()}:{os.getpid()}", "started": started}
    if cache.problem(stage.dirname, need) is None:
        return {**info, "status": "cached", "ended": time.time(), "device": "-"}

    def waiting() -> None:
        _say(f"w2strust: {stage.dirname} is being trained by another process; waiting for it")

    with cache.claim(stage.dirname, wait=waiting):
        problem = cache.problem(stage.dirname, need)  # another process may have finished it meanwhile
        if problem is None:
            return {**info, "status": "cached", "ended": time.time(), "device": "-"}
        if problem != "missing":
            _say(f"w2strust: damaged artefact: {problem}; retraining {stage.dirname}")
        dev = _device(cfg, device)
        if dev.type == "cpu" and "cpu_threads" in stage.spec:
            torch.set_num_threads(stage.spec["cpu_threads"])  # the count its key records (pipeline.cpu_threads)
        if stage.depends:
            weak = f"weak-{stage.depends}"
            weak_problem = cache.problem(weak, required_files(cfg, "weak"))
            if weak_problem is not None:  # the scheduler runs the weak stage first; this is a real fault
                raise RuntimeError(f"{stage.dirname} needs {weak}, which is not usable: {weak_problem}")
        meta, write = _train(cfg, stage, cache, dev, started)
        meta["seconds"] = round(time.time() - started, 1)
        cache.commit(stage.dirname, meta, write)
        gc.collect()  # the model went out of scope: release its memory before the next stage
    return {**info, "status": "trained", "ended": time.time(), "device": str(dev), "metrics": meta["metrics"],
            "seconds": meta["seconds"]}


def _say(line: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(line)


def _device(cfg: ExperimentConfig, device: str | None):
    import torch

    from .train import resolve_device

    dev = resolve_device(device or cfg.device)
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)
    return dev


def load_splits(cfg: ExperimentConfig, seed: int):
    """A seed's splits of the run's property (kept in memory for the next stage of the same seed)."""
    from . import properties

    return _splits(cfg, properties.get(cfg.property), seed)


def _splits(cfg: ExperimentConfig, prop, seed: int):
    from dataclasses import asdict

    key = json.dumps([cfg.property, {k: v for k, v in asdict(cfg.data).items() if k != "data_dir"},
                      cfg.resolved_data_dir(), cfg.extra, seed], sort_keys=True, default=str)
    if key not in _SPLITS:
        _SPLITS.clear()  # keep one seed's data in memory
        _SPLITS[key] = prop.load_splits(cfg, seed)
    return _SPLITS[key]


def _train(cfg: ExperimentConfig, stage: Stage, cache: StageCache, device, started: float):
    """Train and evaluate the stage's model; return its meta.json content and a function writing its files."""
    from . import properties

    prop = properties.get(cfg.property)
    if prop.task == "generation":
        return _train_lm(cfg, prop, stage, cache, device, started)
    return _train_classifier(cfg, prop, stage, cache, device, started)


def _setup(cfg: ExperimentConfig, prop, stage: Stage):
    """What every stage starts from: its seed's splits, its role's model name and training config."""
    is_weak = stage.kind == "weak"
    name = cfg.weak_model if is_weak else cfg.strong_model
    tcfg = cfg.weak_train if is_weak else cfg.strong_train
    return _splits(cfg, prop, stage.seed), is_weak, name, tcfg


def _checked_meta(stage: Stage, prop, desc: str, name: str, model, log: dict, preds: dict, metrics: dict, device,
                  started: float) -> dict[str, Any]:
    """A stage's meta.json content, once its predictions and metrics are known to be finite (a diverged
    model must not be scored: NaN rows would count as class 0)."""
    from . import audit, models

    check_arrays(desc, preds)
    check_metrics(desc, metrics, prop.may_be_missing)
    return {"stage": stage.kind, "seed": stage.seed, "spec": stage.spec, "depends": stage.depends, "model": name,
            "train": log, "metrics": metrics, "audit": audit.collect(device, model, models.provenance(name), started)}


def _train_classifier(cfg: ExperimentConfig, prop, stage: Stage, cache: StageCache, device, started: float):
    import torch
    from datasets import concatenate_datasets

    from . import models
    from .losses import AuxConfidenceLoss
    from .train import predict_proba, train_classifier

    splits, is_weak, name, tcfg = _setup(cfg, prop, stage)
    torch.manual_seed(stage.seed)  # classifier-head initialisation
    model, tok = models.build_classifier(name, prop.num_labels)
    make_loss = None
    if stage.kind == "wts":
        weak_labels = np.load(cache.path(f"weak-{stage.depends}") / "weak_labels.npy")
        ds, targets = splits.wts, weak_labels
        aux = stage.spec["aux"]
        if aux:
            positive_rate = float(weak_labels[:, 1].mean())  # the weak labels' class balance, soft (reference)

            def make_loss(total_steps: int) -> AuxConfidenceLoss:
                return AuxConfidenceLoss(total_steps, aux["alpha_max"], aux["warmup"], positive_rate, aux["buffer"])
    else:
        ds = splits.weak if is_weak else concatenate_datasets([splits.weak, splits.wts])
        targets = np.eye(prop.num_labels, dtype=np.float32)[np.asarray(ds["label"])]
    desc = f"seed {stage.seed} {stage.kind}{'-aux' if stage.spec.get('aux') else ''} {name}"
    prec = stage.spec["precision"]  # the precision in the stage key, resolved where the run was planned
    log = train_classifier(model, tok, ds, targets, tcfg, prop, stage.spec["lambda"], stage.seed, device,
                           make_task_loss=make_loss, desc=desc, precision=prec,
                           length_buckets=stage.spec.get("batching", "length_buckets") == "length_buckets",
                           dropout=stage.spec.get("dropout", "torch"))

    def predict(dataset, column: str = "text") -> np.ndarray:
        return predict_proba(model, tok, dataset, column, tcfg.max_length, cfg.eval_batch_size, device,
                             desc=f"{desc} eval", precision=prec)

    preds = prop.predict(predict, splits)
    metrics = prop.metrics(preds, prop.test_columns(splits))
    meta = _checked_meta(stage, prop, desc, name, model, log, preds, metrics, device, started)

    def write(tmp) -> None:
        np.savez_compressed(tmp / "preds.npz", **preds)
        if is_weak:  # stage 2: the weak model's soft labels on D_WTS
            weak_labels = predict(splits.wts)
            check_arrays(desc, {"weak labels": weak_labels})
            np.save(tmp / "weak_labels.npy", weak_labels)
            meta["weak_label_accuracy"] = float((weak_labels.argmax(-1) == np.asarray(splits.wts["label"])).mean())
        if cfg.save_models:
            model.save_pretrained(tmp / "model", safe_serialization=True)
            tok.save_pretrained(tmp / "model")

    return meta, write


def _train_lm(cfg: ExperimentConfig, prop, stage: Stage, cache: StageCache, device, started: float):
    """A causal-LM stage (task = "generation"): fine-tune (DP when λ = ε > 0), evaluate leakage on the
    model's own training e-mails, and for the weak stage generate the WTS training text."""
    import torch

    from . import models
    from .io import atomic_write_json
    from .train_lm import train_causal_lm

    splits, is_weak, name, tcfg = _setup(cfg, prop, stage)
    weak_outputs = None
    if stage.kind == "wts":
        weak_outputs = json.loads((cache.path(f"weak-{stage.depends}") / "weak_outputs.json").read_text())
    texts = prop.lm_train_texts(stage.kind, splits, weak_outputs)
    torch.manual_seed(stage.seed)  # initialisation of randomly initialised (tiny) models
    model, tok = models.build_causal_lm(name)
    desc = f"seed {stage.seed} {stage.kind} {name}"
    model, log = train_causal_lm(model, tok, texts, tcfg, prop.lm_options(cfg), stage.spec["lambda"], stage.seed,
                                 device, desc=desc, precision=stage.spec["precision"])
    preds, metrics = prop.lm_evaluate(model, tok, stage.kind, splits, cfg, device, tcfg.max_length)
    metrics["epsilon"] = log.get("epsilon", 0.0)  # the ε the accountant reports as spent (0 = no DP)
    meta = _checked_meta(stage, prop, desc, name, model, log, preds, metrics, device, started)

    def write(tmp) -> None:
        np.savez_compressed(tmp / "preds.npz", **preds)
        if is_weak:  # stage 2: the weak model's generations are the WTS training data (the user's own cache)
            atomic_write_json(tmp / "weak_outputs.json", prop.lm_weak_outputs(model, tok, splits, cfg, device,
                                                                              stage.seed))
        if cfg.save_models:
            model.save_pretrained(tmp / "model", safe_serialization=True)
            tok.save_pretrained(tmp / "model")

    return meta, write
