"""Numeric precision of training and prediction: the ``precision`` config key (auto | fp32 | bf16 | fp16).

``auto`` resolves per device to what was measured fastest without losing accuracy (bench/README.md):
- CUDA: bf16 autocast (fp16 on GPUs without bf16) and TF32 matmuls;
- CPU: bf16 autocast where the CPU multiplies bf16 natively (AVX512-BF16 or AMX: 1.5-1.9x faster
  steps for the bundled encoders, same accuracy within seed noise), else fp32 (emulated bf16 is slower);
- anything else (MPS): fp32.
The resolved name, not ``auto``, goes into every stage key: a cache shared between machines never
mixes results of different precisions. Weights and optimizer state stay fp32 (autocast only lowers
the matmuls), so a model saved from any precision loads the same way.
"""

from __future__ import annotations

import contextlib

import torch

from ..errors import W2SError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 dot-product instructions (AVX512-BF16 or AMX)."""
    cpu = torch.cpu
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(cpu, "_is_amx_tile_supported", lambda: False)())


def resolve(name: str, device: torch.device) -> str:
    """``auto`` -> the concrete precision for ``device``; explicit names are checked and returned."""
    if name not in PRECISIONS:
        raise W2SError(f"precision must be one of {', '.join(PRECISIONS)}; got {name!r}")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed-precision context for forward passes (a no-op for fp32)."""
    if device.type == "cuda":
        # TF32 for the fp32 matmuls autocast leaves in fp32 (and the optimizer's): free on Ampere+. The flags are
        # global, so they are set for fp32 too (to torch's defaults): an fp32 stage after a bf16 one in the same worker
        # must not run its matmuls in TF32 under a key that says fp32.
        torch.backends.cuda.matmul.allow_tf32 = precision != "fp32"
        torch.backends.cudnn.allow_tf32 = True
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def for_task(name: str, task: str, device: torch.device) -> str:
    """The concrete precision of a stage (``auto`` resolved for its device and task; in every stage key).

    Causal LMs (task "generation", the privacy property) stay fp32 under ``auto``: Opacus' per-sample gradients
    are computed in fp32, and the DP and non-DP models must differ only in the privacy mechanism.
    """
    if name == "auto" and task == "generation":
        return "fp32"
    return resolve(name, device)
