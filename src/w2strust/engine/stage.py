"""A stage: one trained model of the stage graph, named by a hash of everything that determines its result.

The key is a content hash of the stage's kind, seed, spec (its settings, data fingerprint, precision, ...) and the
key of the stage it depends on (a WTS model's weak model); ``<cache>/<kind>-<key>/`` holds its artefact. So a
killed run resumes where it stopped, strategies share what they have in common, and any executor can run a stage
anywhere. ``experiment/plan.py`` builds the specs; the engine only runs and stores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..io import content_key

CACHE_VERSION = 1  # bump when a change to the code invalidates cached artefacts


@dataclass
class Stage:
    kind: str  # "weak" | "ceiling" | "wts"
    seed: int
    spec: dict[str, Any]  # what determines the result (hashed into the key)
    depends: str | None = None  # key of the weak stage whose labels a WTS stage trains on
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = content_key({"kind": self.kind, "seed": self.seed, "spec": self.spec, "depends": self.depends,
                                "version": CACHE_VERSION})

    @property
    def dirname(self) -> str:
        return f"{self.kind}-{self.key}"
