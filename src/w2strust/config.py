"""Experiment configuration: dataclasses, presets, YAML and ``key=value`` overrides, validation.

A run is fully described by one ``ExperimentConfig``; its resolved form is saved next to the results
(``config.yaml``) and is enough to reproduce them. Presets are per property (``properties/*``
provide them) and are plain dicts of overrides applied to the defaults below.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import W2SError

STRATEGIES = ("no_tft", "weak_tft", "weak_wts_tft")
AUTO = "auto"
AUTO_KEYS = {"lambda_ceiling"}  # keys that take a number or "auto"
ROLES = ("weak", "wts_naive", "wts_aux", "strong_ceiling")
TRACKERS = ("none", "tensorboard", "wandb")


@dataclass
class TrainConfig:
    lr: float = 5e-5
    epochs: float = 1.0
    batch_size: int = 16
    max_length: int = 128
    weight_decay: float = 0.0
    lr_warmup: float = 0.0  # fraction of steps with linear LR warm-up (then linear decay)
    grad_clip: float = 1.0


@dataclass
class DataConfig:
    data_dir: str | None = None  # local copy of the datasets; else $W2STRUST_DATA; else download
    n_weak: int = 1000  # |D_W|
    n_wts: int = 1000  # |D_WTS|
    n_test: int = 0  # |D_T|; 0 = the whole test split
    n_val: int = 0  # property-specific validation set (e.g. OOD's ID validation); 0 = property default


@dataclass
class ExperimentConfig:
    property: str = "fairness"
    preset: str = "custom"
    weak_model: str = "minilm-l3"
    strong_model: str = "minilm-l6"
    seeds: list[int] = field(default_factory=lambda: [0])
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    lambda_weak: float = 1.0  # λ_W: regulariser weight of the weak model (weak_tft, weak_wts_tft)
    lambda_wts: float = 1.0  # λ_WTS: regulariser weight of the WTS models (weak_wts_tft)
    # λ of the ground-truth strong ceiling, or "auto": the most trustworthy of ceiling_lambdas whose task metric
    # is within ceiling_max_drop of the unregularised ceiling's (sweep.py states the rule; README).
    lambda_ceiling: float | str = 1.0
    ceiling_lambdas: list[float] = field(default_factory=list)  # candidates for "auto"; [] = the property's grid
    ceiling_max_drop: float = 0.015  # task-metric units (accuracy: 1.5 points, the cost the paper reports)
    alpha_max: float = 0.25  # auxiliary-confidence-loss weight after warm-up
    aux_warmup: float = 0.2  # fraction of WTS training over which α ramps from 0 to alpha_max
    aux_buffer: int = 256  # rolling buffer of recent strong predictions for the hardening threshold
    weak_train: TrainConfig = field(default_factory=TrainConfig)
    strong_train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval_batch_size: int = 64
    n_bootstrap: int = 500  # resamples of the test set for the WTS-trust significance test
    save_models: bool = False  # also write every trained model's weights (safetensors) into the cache
    device: str = "auto"  # auto | cpu | cuda
    log: str = "none"  # experiment tracking: none | tensorboard | wandb (curves of every stage; not in stage keys)
    extra: dict[str, Any] = field(default_factory=dict)  # property-specific options (documented per property)

    def resolved_data_dir(self) -> str | None:
        return self.data.data_dir or os.environ.get("W2STRUST_DATA") or None

    def ceiling_candidates(self) -> list[float]:
        """The λ values the ceiling is trained at: the fixed one, or every candidate of "auto"."""
        if self.lambda_ceiling != AUTO:
            return [float(self.lambda_ceiling)]
        from . import properties

        return [float(x) for x in (self.ceiling_lambdas or properties.get(self.property).lambda_grid)]

    def all_lambdas(self) -> list[float]:
        """Every λ any model of this config is trained with (for the properties' range checks)."""
        return [self.lambda_weak, self.lambda_wts, *self.ceiling_candidates()]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- building / validating
def _suggest(key: str, options) -> str:
    close = difflib.get_close_matches(key, list(options), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _apply(obj: Any, updates: dict[str, Any], where: str) -> None:
    names = {f.name: f for f in fields(obj)}
    for key, value in updates.items():
        if key not in names:
            raise W2SError(
                f"unknown config key '{where}{key}'.{_suggest(key, names)} Valid keys here: {', '.join(names)}."
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise W2SError(f"config key '{where}{key}' is a section; give a mapping, e.g. {key}: {{lr: 1e-4}}")
            _apply(current, value, f"{where}{key}.")
        elif key in AUTO_KEYS:
            setattr(obj, key, AUTO if value == AUTO else _coerce(value, 0.0, f"{where}{key}"))
        elif key == "extra":
            if not isinstance(value, dict):
                raise W2SError("config key 'extra' must be a mapping")
            current.update(value)
        else:
            setattr(obj, key, _coerce(value, current, f"{where}{key}", LIST_ELEMENTS.get(str(names[key].type))))


LIST_ELEMENTS = {"list[float]": float, "list[int]": int, "list[str]": str}  # element type of an empty list default


def _coerce(value: Any, current: Any, key: str, elem_type: type | None = None) -> Any:
    """Convert ``value`` to the type of the current value (CLI values arrive as strings)."""
    try:
        if isinstance(current, bool):
            if isinstance(value, str):
                if value.lower() in {"true", "1", "yes"}:
                    return True
                if value.lower() in {"false", "0", "no"}:
                    return False
                raise ValueError
            return bool(value)
        if isinstance(current, list):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            elem = elem_type or (type(current[0]) if current else str)
            return [elem(v) for v in value]
        if isinstance(current, float):
            return float(value)
        if isinstance(current, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if current is None or isinstance(current, str):
            return None if value in (None, "", "null", "None") else str(value)
    except (TypeError, ValueError):
        raise W2SError(f"config key '{key}' expects a {type(current).__name__}, got {value!r}") from None
    return value


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["weak_train.lr=1e-4", "seeds=0,1,2"]`` -> nested dict (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise W2SError(f"override '{pair}' must look like key=value (e.g. weak_train.lr=1e-4)")
        key, raw = pair.split("=", 1)
        value = yaml.safe_load(raw) if raw else ""
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise W2SError(f"config file {p} does not exist")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise W2SError(f"config file {p} must hold a mapping of keys to values")
    return data


def validate(cfg: ExperimentConfig) -> None:
    from . import models, properties

    properties.get(cfg.property)  # raises with the list of known properties
    for m in (cfg.weak_model, cfg.strong_model):
        models.get_spec(m)
    bad = [s for s in cfg.strategies if s not in STRATEGIES]
    if bad or not cfg.strategies:
        raise W2SError(f"unknown strategy {bad or '(none given)'}; choose from {', '.join(STRATEGIES)}")
    if not cfg.seeds:
        raise W2SError("seeds is empty; give at least one seed, e.g. --seeds 0,1,2")
    if not 0 <= cfg.alpha_max <= 1:
        raise W2SError(f"alpha_max must be in [0, 1], got {cfg.alpha_max}")
    if not 0 <= cfg.aux_warmup <= 1:
        raise W2SError(f"aux_warmup must be in [0, 1], got {cfg.aux_warmup}")
    for name in ("lambda_weak", "lambda_wts", "lambda_ceiling"):
        if getattr(cfg, name) != AUTO and getattr(cfg, name) < 0:
            raise W2SError(f"{name} must be >= 0 or auto, got {getattr(cfg, name)}")
    if cfg.lambda_ceiling == AUTO:
        cands = cfg.ceiling_candidates()
        if not cands or min(cands) < 0 or len(set(cands)) != len(cands):
            raise W2SError(f"ceiling_lambdas must be distinct values >= 0 (the candidates of lambda_ceiling: auto), "
                           f"got {cands}")
        if cfg.ceiling_max_drop < 0:
            raise W2SError(f"ceiling_max_drop must be >= 0, got {cfg.ceiling_max_drop}")
    for t, label in ((cfg.weak_train, "weak_train"), (cfg.strong_train, "strong_train")):
        if t.lr <= 0 or t.epochs <= 0 or t.batch_size < 1 or t.max_length < 8:
            raise W2SError(f"{label} needs lr > 0, epochs > 0, batch_size >= 1, max_length >= 8; got {t}")
    if cfg.data.n_weak < 2 or cfg.data.n_wts < 2:
        raise W2SError("data.n_weak and data.n_wts must be at least 2")
    if cfg.device not in {"auto", "cpu", "cuda"}:
        raise W2SError(f"device must be auto, cpu or cuda; got {cfg.device}")
    if cfg.log not in TRACKERS:
        raise W2SError(f"log must be one of {', '.join(TRACKERS)}; got '{cfg.log}'")
    properties.get(cfg.property).validate(cfg)


def build_config(prop: str, preset: str | None = None, yaml_path: str | None = None,
                 overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Defaults <- property preset <- YAML file <- command-line overrides, then validate."""
    from . import properties

    cfg = ExperimentConfig(property=prop)
    p = properties.get(prop)
    if preset:
        presets = p.presets()
        if preset not in presets:
            raise W2SError(f"unknown preset '{preset}' for {prop}; choose from {', '.join(presets)}")
        _apply(cfg, presets[preset], "")
        cfg.preset = preset
    if yaml_path:
        data = load_yaml(yaml_path)
        if data.get("property", prop) != prop:
            raise W2SError(f"config file {yaml_path} is for property '{data['property']}', not '{prop}'")
        _apply(cfg, data, "")
    if overrides:
        _apply(cfg, overrides, "")
    from .models import canonical_name

    cfg.weak_model, cfg.strong_model = canonical_name(cfg.weak_model), canonical_name(cfg.strong_model)
    validate(cfg)
    return cfg


def save_yaml(cfg: ExperimentConfig, path: Path) -> None:
    from .io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
