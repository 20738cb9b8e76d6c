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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import concatenate_datasets
from tqdm.auto import tqdm

from .. import models, properties
from ..config.schema import ExperimentConfig
from ..errors import W2SError
from ..io import atomic_write_json
from ..properties.base import TrustProperty
from ..training.causal_lm import train_causal_lm
from ..training.classifier import predict_proba, train_classifier
from ..training.device import resolve_device, use_device
from ..training.finite import check_arrays, check_metrics
from ..training.losses import AuxConfidenceLoss
from . import audit
from .cache import StageCache
from .stage import Stage

_SPLITS: dict[str, Any] = {}  # (property, data settings, seed) -> Splits; one entry, the last one used


def required_files(task: str, kind: str, save_models: bool = False) -> tuple[str, ...]:
    """The files a later stage or the report reads from a stage of this kind (``task`` is the property's: its
    weak stage leaves generations instead of soft labels), and the weights when asked for: a stage cached
    without them is retrained under ``save_models``."""
    weights = ("model/config.json",) if save_models else ()
    if kind != "weak":
        return ("preds.npz", *weights)
    return ("preds.npz", "weak_outputs.json" if task == "generation" else "weak_labels.npy", *weights)


def run_stage(cfg: ExperimentConfig, stage: Stage, cache_root: str, device: str | None = None,
              threads: int | None = None) -> dict[str, Any]:
    """Make sure ``stage`` is in the cache (training it if needed); return what happened (for the stage log)."""
    if threads:
        torch.set_num_threads(threads)
    prop = properties.get(cfg.property)
    cache = StageCache(cache_root)
    need = required_files(prop.task, stage.kind, cfg.save_models)
    started = time.time()
    info = {"stage": stage.dirname, "worker": f"{socket.gethostname()}:{os.getpid()}", "started": started}
    if cache.problem(stage.dirname, need) is None:
        return {**info, "status": "cached", "ended": time.time(), "device": "-"}

    def waiting() -> None:
        tqdm.write(f"w2strust: {stage.dirname} is being trained by another process; waiting for it")

    with cache.claim(stage.dirname, wait=waiting):
        problem = cache.problem(stage.dirname, need)  # another process may have finished it meanwhile
        if problem is None:
            return {**info, "status": "cached", "ended": time.time(), "device": "-"}
        if problem != "missing":
            tqdm.write(f"w2strust: damaged artefact: {problem}; retraining {stage.dirname}")
        dev = use_device(stage_device(stage, device or cfg.device, cfg.device))
        if dev.type == "cpu" and "cpu_threads" in stage.spec:
            torch.set_num_threads(stage.spec["cpu_threads"])  # the count its key records (plan.cpu_threads)
        if stage.depends:
            weak = f"weak-{stage.depends}"
            weak_problem = cache.problem(weak, required_files(prop.task, "weak"))
            if weak_problem is not None:  # the scheduler runs the weak stage first; this is a real fault
                raise RuntimeError(f"{stage.dirname} needs {weak}, which is not usable: {weak_problem}")
        train = _train_lm if prop.task == "generation" else _train_classifier
        meta, write = train(cfg, prop, stage, cache, dev, started)
        meta["seconds"] = round(time.time() - started, 1)
        cache.commit(stage.dirname, meta, write)
        gc.collect()  # the model went out of scope: release its memory before the next stage
    return {**info, "status": "trained", "ended": time.time(), "device": str(dev), "metrics": meta["metrics"],
            "seconds": meta["seconds"]}


def stage_device(stage: Stage, given: str, configured: str) -> str:
    """The device to train ``stage`` on: the executor's (``given``: a worker's GPU, a Ray task's) when it is of the
    kind the stage was planned for, else the run's own ``device`` (``configured``) when that one is. The plan resolved
    the device once and wrote what follows from it into the key (CPU: ``cpu_threads`` and PCG64 dropout; precision),
    so a CPU-planned stage trained on a worker's GPU, or a GPU-planned one on a CPU worker, would store other numbers
    under that key (a study whose runs ask for different devices; a Ray cluster whose head has no GPU)."""
    planned_cpu = "cpu_threads" in stage.spec
    for name in (given, configured):
        if (resolve_device(name).type == "cpu") == planned_cpu:
            return name
    raise W2SError(f"{stage.dirname} was planned for {'the CPU' if planned_cpu else 'an accelerator'} (its key "
                   f"depends on it) but would run on {given}; run it where the plan was made, or plan it with "
                   f"--device {given}")


def load_splits(cfg: ExperimentConfig, prop: TrustProperty, seed: int, files: dict[str, Any] | None = None):
    """A seed's splits of the run's property (kept in memory for the next stage of the same seed). ``files``: the
    data fingerprint of the stage key (``spec["data_files"]``): a file replaced since the splits were read (a second
    run in a notebook) is read again, not served from memory under the new file's key."""
    # precision and device too: adversarial's generated set is attacked by a surrogate trained in the run's precision
    key = json.dumps([cfg.property, {k: v for k, v in asdict(cfg.data).items() if k != "data_dir"},
                      cfg.resolved_data_dir(), cfg.extra, cfg.precision, cfg.device, seed, files], sort_keys=True,
                     default=str)
    if key not in _SPLITS:
        _SPLITS.clear()  # keep one seed's data in memory
        _SPLITS[key] = prop.load_splits(cfg, seed)
    return _SPLITS[key]


def _setup(cfg: ExperimentConfig, prop: TrustProperty, stage: Stage):
    """What every stage starts from: its seed's splits, its role's model name and training config."""
    is_weak = stage.kind == "weak"
    name = cfg.weak_model if is_weak else cfg.strong_model
    tcfg = cfg.weak_train if is_weak else cfg.strong_train
    return load_splits(cfg, prop, stage.seed, stage.spec.get("data_files")), is_weak, name, tcfg


def _checked_meta(stage: Stage, prop: TrustProperty, desc: str, name: str, model, log: dict, preds: dict,
                  metrics: dict, device, started: float) -> dict[str, Any]:
    """A stage's meta.json content, once its predictions and metrics are known to be finite (a diverged
    model must not be scored: NaN rows would count as class 0)."""
    check_arrays(desc, preds)
    check_metrics(desc, metrics, prop.may_be_missing)
    source = models.provenance(name, models.planned_revision(stage.spec["model"]))
    return {"stage": stage.kind, "seed": stage.seed, "spec": stage.spec, "depends": stage.depends, "model": name,
            "train": log, "metrics": metrics, "audit": audit.collect(device, model, source, started)}


def _artefact_writer(preds: dict[str, np.ndarray], model, tok, save_models: bool, weak_output=None):
    """The one writer of a stage's files: ``preds.npz``, the weak model's output for the WTS stages
    (``weak_output(folder)``, weak stages only) and, with ``save_models``, the weights and tokenizer."""
    def write(tmp: Path) -> None:
        np.savez_compressed(tmp / "preds.npz", **preds)
        if weak_output is not None:
            weak_output(tmp)
        if save_models:
            model.save_pretrained(tmp / "model", safe_serialization=True)
            tok.save_pretrained(tmp / "model")

    return write


def _train_classifier(cfg: ExperimentConfig, prop: TrustProperty, stage: Stage, cache: StageCache, device,
                      started: float):
    """Train and evaluate a classifier stage; return its meta.json content and the function writing its files."""
    splits, is_weak, name, tcfg = _setup(cfg, prop, stage)
    if models.get_spec(name).source == "bundled":  # built here if missing (a fresh worker or Ray node): its conversion
        models.model_path(name)  # draws from torch's RNG, which must not move the head's initialisation below
    torch.manual_seed(stage.seed)  # classifier-head initialisation
    # a Hub model: the commit its key names, whatever the Hub serves now
    model, tok = models.build_classifier(name, prop.num_labels, revision=models.planned_revision(stage.spec["model"]))
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

    def weak_labels_file(tmp: Path) -> None:  # stage 2: the weak model's soft labels on D_WTS
        weak_labels = predict(splits.wts)
        check_arrays(desc, {"weak labels": weak_labels})
        np.save(tmp / "weak_labels.npy", weak_labels)
        meta["weak_label_accuracy"] = float((weak_labels.argmax(-1) == np.asarray(splits.wts["label"])).mean())
        # a student's cross-entropy on these soft labels cannot fall below their entropy (validity names it)
        p = np.clip(weak_labels.astype(np.float64), 1e-12, 1.0)
        meta["weak_label_entropy"] = float(-(p * np.log(p)).sum(-1).mean())
        meta["weak_label_max_entropy"] = float(np.log(weak_labels.shape[-1]))  # uniform labels, in nats

    return meta, _artefact_writer(preds, model, tok, cfg.save_models, weak_labels_file if is_weak else None)


def _train_lm(cfg: ExperimentConfig, prop: TrustProperty, stage: Stage, cache: StageCache, device, started: float):
    """A causal-LM stage (task = "generation"): fine-tune (DP when λ = ε > 0), evaluate leakage on the
    model's own training e-mails, and for the weak stage generate the WTS training text."""
    splits, is_weak, name, tcfg = _setup(cfg, prop, stage)
    weak_outputs = None
    if stage.kind == "wts":
        weak_outputs = json.loads((cache.path(f"weak-{stage.depends}") / "weak_outputs.json").read_text())
    texts = prop.lm_train_texts(stage.kind, splits, weak_outputs)
    torch.manual_seed(stage.seed)  # initialisation of randomly initialised (tiny) models
    model, tok = models.build_causal_lm(name, revision=models.planned_revision(stage.spec["model"]))
    desc = f"seed {stage.seed} {stage.kind} {name}"
    model, log = train_causal_lm(model, tok, texts, tcfg, prop.lm_options(cfg), stage.spec["lambda"], stage.seed,
                                 device, desc=desc, precision=stage.spec["precision"])
    preds, metrics = prop.lm_evaluate(model, tok, stage.kind, splits, cfg, device, tcfg.max_length, texts)
    metrics["epsilon"] = log.get("epsilon", 0.0)  # the ε the accountant reports as spent (0 = no DP)
    meta = _checked_meta(stage, prop, desc, name, model, log, preds, metrics, device, started)

    def generations_file(tmp: Path) -> None:  # stage 2: the weak model's generations are the WTS training data
        atomic_write_json(tmp / "weak_outputs.json", prop.lm_weak_outputs(model, tok, splits, cfg, device,
                                                                          stage.seed))

    return meta, _artefact_writer(preds, model, tok, cfg.save_models, generations_file if is_weak else None)
