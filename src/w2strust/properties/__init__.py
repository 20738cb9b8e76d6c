"""Trust properties as plug-ins. Adding one = a module here that registers a ``TrustProperty``."""

from __future__ import annotations

from ..errors import W2SError
from .base import TrustProperty

PROPERTIES: dict[str, TrustProperty] = {}


def register(prop: TrustProperty) -> TrustProperty:
    PROPERTIES[prop.name] = prop
    return prop


def get(name: str) -> TrustProperty:
    _load_builtin()
    if name not in PROPERTIES:
        raise W2SError(f"unknown property '{name}'; choose from {', '.join(sorted(PROPERTIES))}")
    return PROPERTIES[name]


def names() -> list[str]:
    _load_builtin()
    return sorted(PROPERTIES)


def _load_builtin() -> None:
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "base":
            importlib.import_module(f"{__name__}.{mod.name}")


__all__ = ["TrustProperty", "get", "names", "register"]
