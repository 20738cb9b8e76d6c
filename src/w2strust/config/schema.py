"""The config schema: dataclasses, YAML and ``key=value`` overrides, type coercion. No registry is known here:
``config/build.py`` applies a property's preset and validates against the registries.

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

from ..errors import W2SError
from ..io import atomic_write_text

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
    # Validity (report/validity.py): the strong ceiling must beat the weak model on the task metric by at least this,
    # in the property's gap units (accuracy; privacy: bits per byte), or the run is not a weak-to-strong setting.
    min_gap: float = 0.03
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

    def ceiling_candidates(self, grid: tuple[float, ...] | list[float] = ()) -> list[float]:
        """The λ values the ceiling is trained at: the fixed one, or every candidate of "auto" (``ceiling_lambdas``,
        else ``grid``: the property's ``lambda_grid``)."""
        if self.lambda_ceiling != AUTO:
            return [float(self.lambda_ceiling)]
        return [float(x) for x in (self.ceiling_lambdas or grid)]

    def all_lambdas(self, grid: tuple[float, ...] | list[float] = ()) -> list[float]:
        """Every λ any model of this config is trained with (for the properties' range checks)."""
        return [self.lambda_weak, self.lambda_wts, *self.ceiling_candidates(grid)]

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
            for k, v in value.items():  # a nested option set is merged too: a preset's other values stay
                current[k] = {**current[k], **v} if isinstance(v, dict) and isinstance(current.get(k), dict) else v
        else:
            setattr(obj, key, _coerce(value, current, f"{where}{key}", LIST_ELEMENTS.get(str(names[key].type))))


LIST_ELEMENTS = {"list[float]": float, "list[int]": int, "list[str]": str}  # element type of an empty list default


def comma_items(raw: str, what: str, example: str) -> list[str]:
    """'0, 1' -> ['0', '1']; '' -> []. An empty item ('0,,1', '0,1,') is a slip (a missing value?), not a shorter
    list, so it is refused for every comma list: config keys, --lambdas, --properties."""
    items = [v.strip() for v in raw.split(",")] if raw.strip() else []
    if "" in items:
        raise W2SError(f"{what} has an empty item in {raw!r}; write e.g. {example}")
    return items


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
                value = comma_items(str(value), f"config key '{key}'", "0,1,2")
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
            if isinstance(value, (dict, list)) or (value is None and current is not None):
                raise ValueError  # a key with a string default (device, precision, a model) is never empty
            return None if value in (None, "", "null", "None") and current is None else str(value)
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


def save_yaml(cfg: ExperimentConfig, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
