"""Atomic file writes and content hashes: a killed run never leaves a half-written file."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's file is 0600: give it the mode open() would have
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@functools.cache
def _umask() -> int:
    # os.umask can only be read by setting it: do that once per process (another thread creating a file in between
    # would get mode 0666), not at every write
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps_strict(obj, indent=2) + "\n")


def dumps_strict(obj: Any, indent: int | None = None) -> str:
    """Strict JSON (RFC 8259): NaN and ±inf become ``null``, numpy scalars and arrays become plain values.

    Python's ``json`` writes bare ``NaN``/``Infinity`` by default, which strict parsers (jq, JavaScript,
    Go, ``json.loads(..., parse_constant=...)``) reject; every JSON file w2strust writes goes through here.
    """
    try:  # the common case, about 3x faster (stage keys of large studies): nothing to convert
        return json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False)
    except (ValueError, TypeError):  # NaN / inf, numpy values: convert, same text for everything else
        return json.dumps(_finite(obj), indent=indent, sort_keys=True, allow_nan=False)


def _finite(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, np.ndarray):
        return _finite(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    raise TypeError(f"not JSON serialisable: {type(x)}")


def content_key(obj: Any) -> str:
    """A short stable hash of a JSON-serialisable object (the cache key of a stage)."""
    blob = dumps_strict(obj).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_figure(fig, path: Path, dpi: int = 130) -> None:
    """Write a matplotlib figure as PNG atomically (hidden temp file, then rename) and close it: a reader
    never sees half a PNG, and long sweeps do not accumulate open figures."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------- stage artefacts
HASHED_BYTES = 256 * 2**20  # files up to this size are checked by sha256 on every use; larger ones by size


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def artefact_problem(folder: Path, required: tuple[str, ...] = (), verify_files: bool = True) -> str | None:
    """``None`` if a stage folder is complete and intact: its ``meta.json`` parses, lists ``required`` and every
    file it lists is there with the recorded size and sha256 (``verify_files``); else one line naming the damaged
    path. A folder that does not exist gives ``"missing"``. The cache (before reusing a stage) and the report
    (before reading predictions) both check through here."""
    meta_path = folder / "meta.json"
    if not folder.is_dir():
        return "missing"
    if not meta_path.is_file():
        return f"{meta_path} is missing"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"{meta_path} is not valid JSON ({type(e).__name__})"
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict) or "metrics" not in meta:
        return f"{meta_path} has no file manifest or metrics (written by an older w2strust or damaged)"
    for name in required:
        if name not in meta["files"]:
            return f"{folder / name} is missing"
    if not verify_files:
        return None
    for name, want in meta["files"].items():
        p = folder / name
        if not p.is_file():
            return f"{p} is missing"
        size = p.stat().st_size
        if not isinstance(want, dict) or size != want.get("size"):
            return f"{p} has {size} bytes, {want.get('size') if isinstance(want, dict) else '?'} expected " \
                   f"(truncated or overwritten)"
        if size <= HASHED_BYTES and sha256(p) != want.get("sha256"):
            return f"{p} does not match its recorded sha256 (damaged)"
    return None
