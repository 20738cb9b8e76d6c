"""Find a dataset file: in the local data folder when one is given, else download it once into the cache."""

from __future__ import annotations

import contextlib
import csv
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from ..errors import W2SError
from ..io import atomic_write_bytes
from ..models import cache_root


def locate(relative: str, data_dir: str | None, url: str | None) -> Path:
    """``relative`` is the file's path inside a data folder laid out like ``shared/data``.

    With ``data_dir`` the file must be there (a clear error otherwise). Without it the file is
    downloaded from ``url`` into ``<cache>/data/`` once.
    """
    if data_dir:
        root = Path(data_dir)
        if not root.is_dir():
            raise W2SError(f"data folder {root} does not exist. Pass --data-dir (or set W2STRUST_DATA) to a "
                           f"folder laid out like shared/data, or leave both unset to download the data.")
        path = root / relative
        if not path.exists():
            raise W2SError(f"{path} is missing from the data folder {root}. Expected layout: {relative} "
                           f"(see README, 'Data').")
        return path
    path = cache_root() / "data" / relative
    if path.exists():
        return path
    if not url:
        raise W2SError(f"{relative} has no public download; pass --data-dir pointing at a folder that holds it.")
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            atomic_write_bytes(path, r.read())
    except OSError as e:
        raise W2SError(f"could not download {url} ({e}). Offline? Pass --data-dir (or set W2STRUST_DATA) to a "
                       f"local copy of the data, laid out like shared/data.") from None
    return path


@contextlib.contextmanager
def reading(path: Path, what: str) -> Iterator[None]:
    """Turn a data file that cannot be parsed (random bytes, wrong encoding, missing column) into one line
    naming the file and the fix, instead of a traceback from deep inside csv/json."""
    try:
        yield
    except KeyError as e:
        raise W2SError(f"{path}: no {e.args[0]!r} column/field; is this the {what}? Replace it with a fresh copy "
                       f"(see shared/data/SOURCES.md)") from None
    except (UnicodeDecodeError, csv.Error, json.JSONDecodeError, ValueError, IndexError, TypeError,
            AttributeError) as e:
        reason = " ".join(str(e).split())[:100]
        raise W2SError(f"{path} is not a readable {what} ({type(e).__name__}: {reason}); replace it with a fresh "
                       f"copy (see shared/data/SOURCES.md)") from None
