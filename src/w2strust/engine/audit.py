"""What a stage's meta.json records so that a researcher can audit it: the software that produced it
(package versions, the project's git commit and whether the tree had uncommitted changes), where it
ran (device, dtype, threads) and when. The training curve comes from the loops (see ``train_curve.py``),
the wall time from the pipeline.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import subprocess
import time
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("torch", "transformers", "peft", "opacus", "fairlearn", "datasets", "huggingface_hub", "numpy",
            "scikit-learn", "w2strust")
PROJECT_ROOT = Path(__file__).resolve().parents[3]  # the checkout when installed editable (src layout)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


@lru_cache(maxsize=4)
def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """{"commit": sha, "dirty": bool} of the w2strust checkout; "unknown" for both outside a git checkout of it
    (an installed wheel, no git binary). A venv inside some other repository must not report that one's
    commit, hence the check that the repository's top level is the project root."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20,
                              check=True).stdout.strip()

    try:
        if not (root / "pyproject.toml").is_file() or Path(git("rev-parse", "--show-toplevel")).resolve() != root:
            return {"commit": "unknown", "dirty": "unknown"}
        # any change to tracked files, or a new file git does not ignore, can change results
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": "unknown"}


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "torch_threads": torch.get_num_threads(),
                            "platform": platform.platform()}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    else:
        info["device_name"] = platform.processor() or platform.machine()
    return info


def collect(device: torch.device, model: torch.nn.Module, provenance: dict[str, Any], started: float) -> dict:
    """The audit record of one stage (``started`` = its time.time() at the start)."""
    param = next(model.parameters(), None)
    return {
        "versions": package_versions(),
        "git": git_state(),
        **device_info(device),
        "dtype": str(param.dtype).removeprefix("torch.") if param is not None else "unknown",
        "model": provenance,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
    }


# The packages whose version can change a stage's numbers (numerics, training loop, data): not in the stage keys,
# which would make every upgrade retrain everything, but a reused stage of another version is pointed out.
NUMERIC_PACKAGES = ("torch", "transformers", "peft", "opacus", "datasets", "numpy")


def version_drift(audits: Iterable[dict[str, Any]]) -> str | None:
    """One line for cached stages made with other versions of NUMERIC_PACKAGES than the installed ones, or None."""
    now, differ, n = package_versions(), {}, 0
    for a in audits:
        then = (a or {}).get("versions") or {}
        changed = {p: then[p] for p in NUMERIC_PACKAGES if p in then and then[p] != now.get(p)}
        n += bool(changed)
        for p, v in changed.items():
            differ.setdefault(p, set()).add(v)
    if not n:
        return None
    what = ", ".join(f"{p} {'/'.join(sorted(v))} (now {now.get(p)})" for p, v in sorted(differ.items()))
    return (f"w2strust: {n} cached stage(s) were trained with other package versions: {what}. Stage keys leave "
            "versions out, so they are reused; a fresh run may differ in the last digits. To retrain them with these "
            "versions, use another --cache")
