"""The device a stage runs on: one place that reads the ``device`` config key (``auto | cpu | cuda | cuda:N | mps``)."""

from __future__ import annotations

import re

import torch

from ..errors import W2SError

DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (``check_device`` has
    already checked that the accelerator exists)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def use_device(name: str) -> torch.device:
    """``resolve_device``, and make a CUDA device with an index the current one (a worker's GPU)."""
    dev = resolve_device(name)
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)
    return dev


def check_device(device: str) -> None:
    """``auto | cpu | cuda | cuda:N | mps``, and the accelerator must exist here (checked before any training)."""
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if device in ("auto", "cpu"):
        return
    if m:
        if not torch.cuda.is_available():
            raise W2SError(f"device '{device}' asked for, but CUDA is not available on this machine "
                           f"(torch {torch.__version__}); use --device cpu or auto")
        index = int(m.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise W2SError(f"device '{device}' does not exist: this machine has {torch.cuda.device_count()} CUDA "
                           f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return
    if device == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise W2SError("device 'mps' asked for, but Apple MPS is not available here; use --device cpu or auto")
        return
    raise W2SError(f"device must be {DEVICE_FORMS}; got {device!r}")
