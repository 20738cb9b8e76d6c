"""Building a run's config: defaults <- the property's preset <- YAML file <- overrides, then validation of every
value's type and range against the registries (properties, models) before anything trains."""

from __future__ import annotations

import math
from typing import Any

from .. import models, properties
from ..errors import W2SError
from ..training.device import check_device
from ..training.precision import PRECISIONS
from .schema import (
    AUTO,
    STRATEGIES,
    TRACKERS,
    ExperimentConfig,
    _apply,
    _coerce,
    _suggest,
    load_yaml,
)

MAX_INT = 10**12  # larger counts are typos (or a 100,000-digit number), not requests
MAX_SEED = 2**32 - 1  # numpy's and torch's seeding take 32-bit-safe seeds everywhere


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
            # the options not given keep their defaults: {lr: 3e-4} alone must not drop epochs, batch_size, ...
            out[k] = {**default, **_typed_extra(v, default, "option", f"{where}{k}.")}
        else:
            out[k] = _coerce(v, default, f"{where}{k}")
    return out


def _check_model_names(cfg: ExperimentConfig) -> None:
    for role in ("weak_model", "strong_model"):
        name = getattr(cfg, role)
        _require(bool(name and str(name).strip()), f"{role} is empty; name a model (see `w2strust models`)")


def validate(cfg: ExperimentConfig) -> None:
    """Every value's type and range, before anything trains (a bad value never costs a trained model)."""
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
    _require(cfg.min_gap >= 0, f"min_gap must be >= 0 (the ceiling's least lead over the weak model), got "
                               f"{cfg.min_gap}")
    _require(0 <= cfg.aux_warmup <= 1, f"aux_warmup must be in [0, 1], got {cfg.aux_warmup}")
    _require(cfg.aux_buffer >= 0, f"aux_buffer must be >= 0 (0 = the current batch), got {cfg.aux_buffer}")
    for name in ("lambda_weak", "lambda_wts", "lambda_ceiling"):
        if getattr(cfg, name) != AUTO and getattr(cfg, name) < 0:
            raise W2SError(f"{name} must be >= 0 or auto, got {getattr(cfg, name)}")
    if cfg.lambda_ceiling == AUTO:
        cands = cfg.ceiling_candidates(prop.lambda_grid)
        if not cands or min(cands) < 0 or len(set(cands)) != len(cands):
            raise W2SError(f"ceiling_lambdas must be distinct values >= 0 (the candidates of lambda_ceiling: auto), "
                           f"got {cands}")
    if cfg.ceiling_max_drop < 0:  # also without auto: the config is stored and reused
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
    # fewer than 20 resamples cannot resolve p < 0.05 (a p of 0 would be a verdict the test cannot give) nor a 95% CI
    _require(20 <= cfg.n_bootstrap <= 1_000_000, "n_bootstrap must be in [20, 1000000] (fewer resamples cannot "
             f"resolve p < 0.05; the presets use 50 to 1000), got {cfg.n_bootstrap}")
    check_device(cfg.device)
    _require(cfg.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}; got {cfg.precision!r}")
    _require(cfg.log in TRACKERS, f"log must be one of {', '.join(TRACKERS)}; got '{cfg.log}'")
    prop.validate(cfg)


def build_config(prop: str, preset: str | None = None, yaml_path: str | None = None,
                 overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Defaults <- property preset <- YAML file <- command-line overrides, then validate."""
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
        if preset and data.get("preset", preset) != preset:  # a run's config.yaml names the preset it was built on
            # "custom": made without a preset; it is applied on the defaults alone (the CLI does so unasked)
            fix = "give no preset (Python: preset=None)" if data["preset"] == "custom" else \
                f"give --preset {data['preset']} (Python: preset={data['preset']!r})"
            raise W2SError(f"config file {yaml_path} was made with preset '{data['preset']}', but preset "
                           f"'{cfg.preset}' is applied under it: what the file does not set (extra options among "
                           f"them) would keep that preset's values; {fix}")
        _apply(cfg, data, "")
    if overrides:  # with no preset applied (a whole resolved config given as overrides), `preset` is its label
        for key, applied in (("property", prop), ("preset", preset)):
            if applied and key in overrides and overrides[key] != applied:
                raise W2SError(f"'{key}' cannot be overridden (got {overrides[key]!r}; this run's is '{applied}'): "
                               f"give the {'property as the command argument' if key == 'property' else '--preset'}"
                               f" instead")
        _apply(cfg, overrides, "")
    _check_model_names(cfg)  # before canonical_name, which takes a path or a name, never nothing
    cfg.weak_model, cfg.strong_model = models.canonical_name(cfg.weak_model), models.canonical_name(cfg.strong_model)
    validate(cfg)
    return cfg

