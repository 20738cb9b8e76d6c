"""The stage cache: one folder per finished stage, written whole or not at all, verified before use,
and locked while a process trains it.

Layout of ``<cache>/``:

- ``<kind>-<key>/``: a finished stage. ``meta.json`` is written last and lists every other file of
  the folder with its size and sha256 (``files``); a stage counts as cached only if its meta.json
  parses and every listed file is there with that size and hash.
- ``.<kind>-<key>-<host>-<pid>-<random>/``: a stage being written (hidden; renamed into place when
  complete). The name records who writes it, so a leftover can be traced to a dead process.
- ``.locks/<kind>-<key>.lock``: the stage's lock (an OS lock via ``filelock``). The OS releases it when
  its holder dies, so the lock of a killed process is simply taken over: there are no stale locks to
  break. Whoever holds a stage's lock is the only process that may write that stage; therefore a temp
  folder of a stage whose lock we hold belongs to a dead writer and is removed.

Two processes (two ``w2strust run``s, a run and a sweep, Ray tasks on several nodes) may share one
cache folder: a stage is trained by one of them while the others wait for its lock and then load it.
For several machines the folder must be on storage they all see, with working ``flock`` (NFSv4, Lustre,
BeeGFS and GPFS provide it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from ..io import artefact_problem, atomic_write_json, sha256


def manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file under ``folder`` except meta.json (which will carry the manifest)."""
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "meta.json":
            files[p.relative_to(folder).as_posix()] = {"size": p.stat().st_size, "sha256": sha256(p)}
    return files


class StageCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._verified: set[str] = set()  # stages verified by this process (unchanged since: we never rewrite one)

    def path(self, dirname: str) -> Path:
        return self.root / dirname

    # ------------------------------------------------------------------ verification
    def problem(self, dirname: str, required: tuple[str, ...] = ()) -> str | None:
        """``None`` if the stage is complete and intact; else one line naming the damaged path.
        A stage that was never written gives ``"missing"``."""
        problem = artefact_problem(self.path(dirname), required, verify_files=dirname not in self._verified)
        if problem is None:
            self._verified.add(dirname)
        return problem

    def load_meta(self, dirname: str) -> dict[str, Any]:
        return json.loads((self.path(dirname) / "meta.json").read_text())

    # ------------------------------------------------------------------ locking and writing
    def lock(self, dirname: str) -> FileLock:
        (self.root / ".locks").mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / ".locks" / f"{dirname}.lock"))

    @contextlib.contextmanager
    def claim(self, dirname: str, wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the stage's lock (blocking; ``wait`` is called once if another process holds it), and
        remove temp folders that dead writers of this stage left behind."""
        lock = self.lock(dirname)
        if not _try(lock):
            if wait:
                wait()
            lock.acquire()
        try:
            for tmp in self.root.glob(f".{dirname}-*"):
                if tmp.is_dir():  # we hold the lock, so its writer is gone
                    _remove_left_over(tmp, dirname)
            yield
        finally:
            lock.release()

    def commit(self, dirname: str, meta: dict[str, Any], write: Callable[[Path], None]) -> Path:
        """Write a stage into a hidden temp folder (``write(tmp)`` adds its files), then meta.json with the
        manifest, then rename the folder into place: the stage exists whole or not at all.
        The caller holds the stage's lock (``claim``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        owner = f"{socket.gethostname().replace('-', '_')}-{os.getpid()}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{dirname}-{owner}-", dir=self.root))
        try:
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a shared cache must be readable by its users
            write(tmp)
            meta = {**meta, "files": manifest(tmp)}
            atomic_write_json(tmp / "meta.json", meta)
            _fsync_dir(tmp)
            final = self.path(dirname)
            if final.exists():  # a damaged copy that failed verification
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(self.root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._verified.add(dirname)
        return final

    def clean_stale(self) -> list[Path]:
        """Remove every hidden temp folder whose stage lock is free (its writer died); return them."""
        removed = []
        if not self.root.is_dir():
            return removed
        for tmp in sorted(self.root.glob(".*-*")):
            if not tmp.is_dir() or tmp.name == ".locks":
                continue
            dirname = _stage_of(tmp.name)
            if dirname is None:
                continue
            lock = self.lock(dirname)
            if not _try(lock):
                continue  # being written right now
            try:
                if tmp.exists():
                    _remove_left_over(tmp, dirname)
                    removed.append(tmp)
            finally:
                lock.release()
        return removed


def _try(lock: FileLock) -> bool:
    """Take ``lock`` if it is free; False if another process holds it."""
    try:
        lock.acquire(blocking=False)
        return True
    except Timeout:
        return False


def _remove_left_over(tmp: Path, dirname: str) -> None:
    """Remove the temp folder of a writer that died (the caller holds the stage's lock), saying whose it was."""
    tqdm.write(f"w2strust: removing {tmp} (left by {_owner(tmp.name, dirname)}, which stopped before finishing the "
               "stage)")
    shutil.rmtree(tmp, ignore_errors=True)


def _stage_of(tmp_name: str) -> str | None:
    """``.wts-0123456789abcdef-host-123-xyz`` -> ``wts-0123456789abcdef``."""
    parts = tmp_name[1:].split("-")
    if len(parts) < 3 or len(parts[1]) != 16:
        return None
    return f"{parts[0]}-{parts[1]}"


def _owner(tmp_name: str, dirname: str) -> str:
    rest = tmp_name[len(dirname) + 2:].split("-")
    return f"process {rest[1]} on {rest[0]}" if len(rest) >= 3 and rest[1].isdigit() else "an interrupted process"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
