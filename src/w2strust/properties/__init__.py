"""Trust properties as plug-ins: one module per property, each a ``TrustProperty`` (``base.py``).

The built-ins are named below; another package adds a property through the entry-point group
``w2strust.properties`` (``name = "package.module:PropertyClass"``), and a notebook or script with
``register(MyProperty())``. The pipeline, cache, report and CLI then find it by its name.
"""

from __future__ import annotations

from ..registry import Registry
from .base import TrustProperty

PROPERTIES: Registry[TrustProperty] = Registry("property", {
    "fairness": "w2strust.properties.fairness:Fairness",
    "ood": "w2strust.properties.ood:OODRobustness",
    "adversarial": "w2strust.properties.adversarial:AdversarialRobustness",
    "privacy": "w2strust.properties.privacy:Privacy",
}, entry_points="w2strust.properties")


def register(prop: TrustProperty | type[TrustProperty]) -> TrustProperty:
    """Make a property available by its ``name`` (an instance, or a class to instantiate); returns the instance."""
    obj = prop() if isinstance(prop, type) else prop
    return PROPERTIES.register(obj.name, obj)


def get(name: str) -> TrustProperty:
    return PROPERTIES.get(name)


def names() -> list[str]:
    return sorted(PROPERTIES.names())


__all__ = ["PROPERTIES", "TrustProperty", "get", "names", "register"]
