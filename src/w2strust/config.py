"""Experiment configuration: dataclasses, presets, YAML and ``key=value`` overrides, validation.

A run is fully described by one ``ExperimentConfig``; its resolved form is saved next to the results
(``config.yaml``) and is enough to reproduce them. Presets are per property (``properties/*``
provide them) and are plain dicts of overrides applied to the defaults below.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
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
    # hardening threshold of the aux loss: 0 = quantile of the current batch's scores (Burns et al., EleutherAI
    # w2s); N > 0 = over a rolling window of the last N scores (for tiny batches; it lags the model: at 256 the
    # fairness students drifted and collapsed, bench/README.md "Batches and the auxiliary loss")
    aux_buffer: int = 0
    weak_train: TrainConfig = field(default_factory=TrainConfig)
    strong_train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval_batch_size: int = 64
    n_bootstrap: int = 500  # resamples of the test set for the WTS-trust significance test
    save_models: bool = False  # also write every trained model's weights (safetensors) into the cache
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16: autocast of training and prediction (see precision.py)
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
            if not isinstance(value, (bool, int)) or value not in (0, 1):
                raise ValueError
            return bool(value)
        if isinstance(current, list):
            if value is None:
                value = []
            if isinstance(value, (str, int, float)):
                value = [v.strip() for v in str(value).split(",") if v.strip()]
            proto = elem_type() if elem_type else (current[0] if current else "")
            return [_coerce(v, proto, key) for v in value]
        if isinstance(current, float):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if isinstance(current, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                return int(value)
            return int(value) if isinstance(value, (int, float)) else int(str(value))
        if current is None or isinstance(current, str):
            if isinstance(value, (dict, list)):
                raise ValueError
            return None if value in (None, "", "null", "None") else str(value)
    except (TypeError, ValueError, OverflowError):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        kind = {"bool": "true/false", "int": "an integer", "float": "a number", "list": "a comma-separated list",
                "str": "a string", "NoneType": "a string"}.get(type(current).__name__, type(current).__name__)
        raise W2SError(f"config key '{key}' expects {kind}, got {shown}") from None
    return value


def _yaml_value(raw: str, where: str) -> Any:
    """A YAML scalar/collection from a string; unparsable or absurd values are a one-line error."""
    try:
        return yaml.safe_load(raw)
    except (yaml.YAMLError, ValueError) as e:  # ValueError: an integer past Python's 4,300-digit limit
        reason = " ".join(str(e).split())[:120]
        if isinstance(e, ValueError) and "digits" in reason:
            reason = "a number with thousands of digits; give a value of sensible size"
        raise W2SError(f"{where}: cannot parse {raw[:40]!r}{'...' if len(raw) > 40 else ''} ({reason})") from None


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["weak_train.lr=1e-4", "seeds=0,1,2"]`` -> nested dict (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise W2SError(f"override '{pair}' must look like key=value (e.g. weak_train.lr=1e-4)")
        key, raw = pair.split("=", 1)
        value = _yaml_value(raw, f"--set {key}") if raw else ""
        node = out
        parts = key.strip().split(".")
        if not all(parts):
            raise W2SError(f"override '{pair[:60]}' has an empty key part; write e.g. weak_train.lr=1e-4")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise W2SError(f"override '{key}' sets a key inside '{p}', which was already given a value")
        node[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise W2SError(f"config file {p} does not exist")
    if p.is_dir():
        raise W2SError(f"config file {p} is a folder; give the path of a YAML file, e.g. runs/x/config.yaml")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise W2SError(f"config file {p} is not UTF-8 text (byte {e.start}); save it as UTF-8 YAML") from None
    except OSError as e:
        raise W2SError(f"cannot read config file {p}: {e.strerror}") from None
    data = _yaml_value(text, f"config file {p}") or {}
    if not isinstance(data, dict):
        raise W2SError(f"config file {p} must hold a mapping of keys to values")
    return data


MAX_INT = 10**12  # larger counts are typos (or a 100,000-digit number), not requests
MAX_SEED = 2**32 - 1  # numpy's and torch's seeding take 32-bit-safe seeds everywhere
DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"


def _check_numbers(obj: Any, where: str = "") -> None:
    """Every number anywhere in the config (``extra`` included) is finite and of a sane size."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        key = f"{where}{k}" if isinstance(obj, dict) else f"{where[:-1]}[{k}]"
        if isinstance(v, (dict, list)):
            _check_numbers(v, f"{key}.")
        elif isinstance(v, float) and not math.isfinite(v):
            raise W2SError(f"config key '{key}' is {v}; give a finite number")
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
            raise W2SError(f"config key '{key}' is too large ({str(v)[:20]}... has {len(str(abs(v)))} digits); "
                           f"give a value up to {MAX_INT:.0e}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise W2SError(message)


def check_device(device: str) -> None:
    """``auto | cpu | cuda | cuda:N | mps``, and the accelerator must exist here (checked before any training)."""
    import re

    import torch

    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if device in ("auto", "cpu"):
        return
    if m:
        if not torch.cuda.is_available():
            raise W2SError(f"device '{device}' asked for, but CUDA is not available on this machine "
                           f"(torch {torch.__version__}); use --device cpu or auto")
        index = int(m.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise W2SError(f"device '{device}' does not exist: this machine has {torch.cuda.device_count()} CUDA "
                           f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return
    if device == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise W2SError("device 'mps' asked for, but Apple MPS is not available here; use --device cpu or auto")
        return
    raise W2SError(f"device must be {DEVICE_FORMS}; got {device!r}")


def _typed_extra(given: dict[str, Any], defaults: dict[str, Any], what: str, where: str) -> dict[str, Any]:
    """``extra.*`` options: known to the property, each of its default's type (so ``extra.delta=abc`` is a
    one-line error, not a traceback deep inside training)."""
    unknown = sorted(str(k) for k in set(given) - set(defaults))
    if unknown:
        known = ", ".join(defaults) or "none (this property takes no extra options)"
        raise W2SError(f"unknown {what}(s) {where}{f', {where}'.join(unknown)}.{_suggest(unknown[0], defaults)} "
                       f"Known: {known}.")
    out = {}
    for k, v in given.items():
        default = defaults[k]
        if isinstance(default, dict):
            _require(isinstance(v, dict), f"config key '{where}{k}' is a section; give a mapping")
            out[k] = _typed_extra(v, default, "option", f"{where}{k}.")
        else:
            out[k] = _coerce(v, default, f"{where}{k}")
    return out


def _check_model_names(cfg: ExperimentConfig) -> None:
    for role in ("weak_model", "strong_model"):
        name = getattr(cfg, role)
        _require(bool(name and str(name).strip()), f"{role} is empty; name a model (see `w2strust models`)")


def validate(cfg: ExperimentConfig) -> None:
    """Every value's type and range, before anything trains (a bad value never costs a trained model)."""
    from . import models, properties

    prop = properties.get(cfg.property)  # raises with the list of known properties
    cfg.extra = _typed_extra(cfg.extra, prop.extra_options, f"{cfg.property} option", "extra.")
    _check_numbers(cfg.to_dict())
    _check_model_names(cfg)
    for role in ("weak_model", "strong_model"):
        models.get_spec(getattr(cfg, role))
    bad = [s for s in cfg.strategies if s not in STRATEGIES]
    if bad or not cfg.strategies:
        raise W2SError(f"unknown strategy {bad or '(none given)'}; choose from {', '.join(STRATEGIES)}")
    _require(len(set(cfg.strategies)) == len(cfg.strategies), f"strategies {cfg.strategies} repeat a strategy")
    _require(bool(cfg.seeds), "seeds is empty; give at least one seed, e.g. --seeds 0,1,2")
    dup = sorted({s for s in cfg.seeds if cfg.seeds.count(s) > 1})
    _require(not dup, f"seed(s) {', '.join(map(str, dup))} given more than once in seeds {cfg.seeds}: a repeated "
                      f"seed would be counted as another independent run")
    _require(all(0 <= s <= MAX_SEED for s in cfg.seeds), f"seeds must be integers in [0, 2^32 - 1]; got {cfg.seeds}")
    _require(0 <= cfg.alpha_max <= 1, f"alpha_max must be in [0, 1], got {cfg.alpha_max}")
    _require(0 <= cfg.aux_warmup <= 1, f"aux_warmup must be in [0, 1], got {cfg.aux_warmup}")
    _require(cfg.aux_buffer >= 0, f"aux_buffer must be >= 0 (0 = the current batch), got {cfg.aux_buffer}")
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
        _require(t.lr > 0, f"{label}.lr must be > 0, got {t.lr}")
        _require(0 < t.epochs <= 1000, f"{label}.epochs must be in (0, 1000], got {t.epochs}")
        _require(1 <= t.batch_size <= 65536, f"{label}.batch_size must be in [1, 65536], got {t.batch_size}")
        _require(8 <= t.max_length <= 1_000_000, f"{label}.max_length must be in [8, 1000000], got {t.max_length}")
        _require(t.weight_decay >= 0, f"{label}.weight_decay must be >= 0, got {t.weight_decay}")
        _require(0 <= t.lr_warmup <= 1, f"{label}.lr_warmup must be in [0, 1], got {t.lr_warmup}")
        _require(t.grad_clip >= 0, f"{label}.grad_clip must be >= 0 (0 = no clipping), got {t.grad_clip}")
    _require(cfg.data.n_weak >= 2 and cfg.data.n_wts >= 2, "data.n_weak and data.n_wts must be at least 2")
    for name in ("n_test", "n_val"):
        _require(getattr(cfg.data, name) >= 0, f"data.{name} must be >= 0 (0 = the property's default, usually all "
                                               f"rows), got {getattr(cfg.data, name)}")
    _require(cfg.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {cfg.eval_batch_size}")
    _require(1 <= cfg.n_bootstrap <= 1_000_000, f"n_bootstrap must be in [1, 1000000], got {cfg.n_bootstrap}")
    check_device(cfg.device)
    from .precision import PRECISIONS

    _require(cfg.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}; got {cfg.precision!r}")
    _require(cfg.log in TRACKERS, f"log must be one of {', '.join(TRACKERS)}; got '{cfg.log}'")
    prop.validate(cfg)


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

    _check_model_names(cfg)  # before canonical_name, which takes a path or a name, never nothing
    cfg.weak_model, cfg.strong_model = canonical_name(cfg.weak_model), canonical_name(cfg.strong_model)
    validate(cfg)
    return cfg


def save_yaml(cfg: ExperimentConfig, path: Path) -> None:
    from .io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
