"""One registry class for everything looked up by name: trust properties and models.

A registry holds an explicit mapping of built-ins (objects, or ``"module:attribute"`` strings imported on first
use, so that listing names costs no import), objects registered at run time (``register``), and, when it has an
entry-point group, what other installed packages declare there: a package can ship a property with

    [project.entry-points."w2strust.properties"]
    toxicity = "my_package.toxicity:Toxicity"

An attribute that is a class is instantiated once; a name that is not known is a one-line ``W2SError`` that
lists the known names and suggests the closest.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import multiprocessing
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from .errors import W2SError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, builtins: dict[str, T | str] | None = None, entry_points: str | None = None):
        self.kind = kind  # "property", "model": used in messages
        self._entries: dict[str, T | str] = dict(builtins or {})
        self._group = entry_points
        self._plugins_loaded = entry_points is None

    def register(self, name: str, obj: T) -> T:
        """Add (or replace) ``name``; returns ``obj`` so that it can be used as ``X = registry.register(...)``."""
        self._entries[name] = obj
        return obj

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in md.entry_points(group=self._group or ""):
            self._entries.setdefault(ep.name, ep.value)  # a built-in of the same name wins

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def names(self) -> list[str]:
        self._load_plugins()
        return list(self._entries)

    def get(self, name: str) -> T:
        self._load_plugins()
        if name not in self._entries:
            close = difflib.get_close_matches(str(name), list(self._entries), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            worker = ""
            if multiprocessing.parent_process() is not None:  # a spawned worker imported the script, not its guard
                worker = (f"; this is a worker process: register a {self.kind} at the top level of your script, "
                          f"outside `if __name__ == \"__main__\":`, so that the workers register it too")
            raise W2SError(f"unknown {self.kind} '{name}';{hint} choose from "
                           f"{', '.join(sorted(self._entries))}{worker}")
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = self._entries[name] = _resolve(entry, self.kind, name)
        return entry  # type: ignore[return-value]

    def items(self) -> Iterator[tuple[str, T]]:
        for name in self.names():
            yield name, self.get(name)

    def find(self, match) -> T | None:
        """The first entry for which ``match(entry)`` is true (loads every entry), else None."""
        return next((obj for _, obj in self.items() if match(obj)), None)


def _resolve(target: str, kind: str, name: str) -> Any:
    module, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise W2SError(f"{kind} '{name}' points at {target}, which cannot be imported ({type(e).__name__}: {e}); "
                       f"reinstall the package that provides it") from e
    return obj() if isinstance(obj, type) else obj
