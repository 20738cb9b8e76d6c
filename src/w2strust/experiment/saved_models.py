"""Readable paths to the models a run saved (``save_models``): ``<out>/models/<strategy>/<role>/seed<k>``.

The weights live once in the content-addressed cache (``<cache>/<stage>-<key>/model``, shared by every
strategy that uses the stage); the readable path points there, so ``from_pretrained`` loads it as it
is. It is a relative symlink (the run folder can move together with its cache), else a folder of
hard links to the same files (Windows without symlink rights), else, across file systems, a folder
holding only ``MODEL_PATH.txt`` with the cache folder's absolute path.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

POINTER = "MODEL_PATH.txt"


def link_saved_models(out: Path, cache: Path, records: list[dict[str, Any]]) -> list[Path]:
    """One readable path per (strategy, role, seed) record; returns them. ``<out>/models`` holds this run's paths
    only: those of an earlier run in the folder (other seeds or strategies) are removed, never the weights."""
    _remove(Path(out) / "models")  # links, hard links and pointer files: rmtree does not follow symlinks
    paths = []
    for r in records:
        target = (Path(cache) / r["artefact"] / "model").resolve()
        link = Path(out) / "models" / r["strategy"] / r["role"] / f"seed{r['seed']}"
        _point(link, target)
        paths.append(link)
    return paths


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _point(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    _remove(link)
    try:
        # from where the link physically lies: relpath is lexical, and a path through a symlinked folder
        # (macOS /tmp, a cluster's /scratch) would give a link that points at nothing
        link.symlink_to(os.path.relpath(target, link.parent.resolve()), target_is_directory=True)
        return
    except OSError:
        pass
    link.mkdir()
    try:
        for f in target.iterdir():
            os.link(f, link / f.name)
    except OSError:  # another file system: no links at all, say where the weights are
        shutil.rmtree(link)
        link.mkdir()
        (link / POINTER).write_text(f"{target}\n")
