"""Run configuration. ``schema`` holds the dataclasses and parsing (no registry); ``build`` applies presets and
validates against the registries. This package's ``__init__`` re-exports the schema only, so that modules below
the registries (training, properties) can import it."""

from .schema import (
    AUTO,
    ROLES,
    STRATEGIES,
    DataConfig,
    ExperimentConfig,
    TrainConfig,
    load_yaml,
    parse_overrides,
    save_yaml,
)

__all__ = ["AUTO", "ROLES", "STRATEGIES", "DataConfig", "ExperimentConfig", "TrainConfig", "load_yaml",
           "parse_overrides", "save_yaml"]
