"""w2strust: weak-to-strong trustworthiness of language models.

Layers (imports go only downward): __main__ -> cli -> api -> experiment -> engine, report -> config.build
-> properties, data -> training, models -> config.schema -> io, errors, registry.

The Python API (``run``, ``study``, ``load_results``, ``report``, ``configure``, the config dataclasses and
``properties.register``) is imported on first use, so that ``import w2strust`` stays cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

_API = ("run", "study", "load_results", "report", "configure", "Results", "StudyResults")
_CONFIG = ("ExperimentConfig", "TrainConfig", "DataConfig")
__all__ = [*_API, *_CONFIG, "W2SError", "properties", "__version__"]


def __getattr__(name: str):
    # here, not at the top: the API pulls in torch and transformers (seconds), which `import w2strust.errors` or a
    # spawned worker process must not pay for
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _CONFIG:
        from .config import schema

        return getattr(schema, name)
    if name == "W2SError":
        from .errors import W2SError

        return W2SError
    if name == "properties":  # the submodule, for w2strust.properties.register after a bare `import w2strust`
        import importlib

        return importlib.import_module(f"{__name__}.properties")
    raise AttributeError(f"module 'w2strust' has no attribute {name!r}")
