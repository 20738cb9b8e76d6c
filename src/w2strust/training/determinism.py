"""Ask torch for deterministic kernels, so that the same seed gives the same numbers on a GPU too.

On CPU every kernel w2strust uses is already deterministic. On CUDA, cuBLAS needs a fixed workspace
(``CUBLAS_WORKSPACE_CONFIG``, read when its handle is created: this runs before the first training
step of a process) and cuDNN must not benchmark algorithms. ``warn_only`` keeps an op without a
deterministic implementation usable: torch then warns and names it (see README, "Same seed").
"""

from __future__ import annotations

import os

import torch


def use_deterministic_kernels() -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
