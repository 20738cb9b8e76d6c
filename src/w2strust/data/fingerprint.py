"""The data fingerprint: size and SHA-256 of every file a property reads, part of every stage key.

Without it, a changed data file (a new copy of Adult, an edited CSV) would reuse models trained on the
old one. Each property declares its files (``TrustProperty.data_files``); the hash of a file is computed
once per process and file version (path, size, modification time), so planning a run costs one read of
its data files, and rereading them for the next plan costs nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .download import locate

_HASHES: dict[tuple[str, int, int, int, int], str] = {}
# What a stage key records for a dataset read from the Hub (no data folder, no URL): its name there, not its bytes. The
# record changes when a loader changes what it makes of that data, so stages of the old text are not reused.
# 2: SST-2 phrases stripped of GLUE's trailing space, as they are from a data folder.
HUB_RECORD = "hub, loader 2"


def file_hash(path: Path) -> str:
    st = path.stat()
    # inode and ctime too: `cp -p`, `rsync -a` and `tar x` replace a file keeping its size and mtime
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    if memo not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHES[memo] = h.hexdigest()
    return _HASHES[memo]


def fingerprint(files: list[tuple[str, str | None, bool]], data_dir: str | None) -> dict[str, Any]:
    """``files`` = (path inside a data folder, download URL or None, required) -> {path: {size, sha256}}.

    Files are located as the loaders locate them (downloaded first when there is no data folder). An
    optional file that is absent is recorded as such; a dataset that only comes from the Hub (no data
    folder, no URL) is recorded by name: its content is what the Hub serves under that name.
    """
    out: dict[str, Any] = {}
    for relative, url, required in files:
        if not data_dir and not url:
            out[relative] = HUB_RECORD
            continue
        if data_dir and not required and not (Path(data_dir) / relative).exists():
            out[relative] = "absent"
            continue
        path = locate(relative, data_dir, url)
        out[relative] = {"size": path.stat().st_size, "sha256": file_hash(path)}
    return out
