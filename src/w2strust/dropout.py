"""Dropout masks from an integer hash on the CPU: the same Bernoulli(1 − p) dropout, several times cheaper.

Why: PyTorch draws CPU dropout masks with a serial Mersenne twister (``bernoulli_``, about 7 ns per element on
one core). In a minilm training step on the 2-core CPU that was 14-17% of the step (profile: bench/README.md).
Here the keep/drop of element i in one dropout call is ``lowbias32(T[i] + k) >= threshold``:
- ``lowbias32`` is C. Wellons' 32-bit integer hash (a bijection with near-ideal avalanche), run as a handful of
  vectorised, multithreaded int32 tensor ops;
- ``T[i] = lowbias32(i)`` is computed once and reused, so each call costs one hash;
- ``k`` is a fresh 32-bit key per call, drawn from a generator seeded by the stage's seed.
The masks are independent across calls and elements (as with a 32-bit-state generator), the keep rate is 1 − p
to 2⁻³², and the same seed gives the same masks bit for bit, whatever the number of threads.

``HashDropout(seed)`` is a torch function mode: inside it every ``F.dropout`` and every
``F.scaled_dot_product_attention`` with ``dropout_p > 0`` (attention-probability dropout, whatever the model
architecture) uses these masks. Everything else passes through untouched. The classifier training loop uses it
on the CPU (``pipeline.dropout_masks`` records it in the stage key); GPUs keep PyTorch's own dropout (Philox,
already fast).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_M1, _M2 = 0x7FEB352D, 0x846CA68B - (1 << 32)  # lowbias32's multipliers, as int32 (multiplication wraps mod 2³²)


def lowbias32_(h: torch.Tensor) -> torch.Tensor:
    """In place on an int32 tensor: x ^= x >>> 16; x *= M1; x ^= x >>> 15; x *= M2; x ^= x >>> 16 (mod 2³²).

    int32 shifts are arithmetic, so each ``>>>`` (logical) is a shift followed by a mask of the low bits."""
    h.bitwise_xor_(h.bitwise_right_shift(16).bitwise_and_(0xFFFF))
    h.mul_(_M1)
    h.bitwise_xor_(h.bitwise_right_shift(15).bitwise_and_(0x1FFFF))
    h.mul_(_M2)
    h.bitwise_xor_(h.bitwise_right_shift(16).bitwise_and_(0xFFFF))
    return h


def _int32(value: int) -> int:
    """A value mod 2³² as a signed int32 Python int."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class HashDropout(TorchFunctionMode):
    """Within ``with HashDropout(seed):`` dropout uses hashed masks (module docstring)."""

    def __init__(self, seed: int):
        super().__init__()
        self.keys = np.random.default_rng([seed, 0x5EED])  # a key per call, reproducible from the seed
        self.table: dict[torch.device, torch.Tensor] = {}  # lowbias32(i) for i < n, per device

    def keep_mask(self, shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
        """Bool tensor of ``shape``, each element True with probability 1 − p."""
        n = math.prod(shape)
        table = self.table.get(device)
        if table is None or table.numel() < n:  # grown geometrically: batch widths vary from step to step
            size = max(n, 1 << 16, 2 * (table.numel() if table is not None else 0))
            table = lowbias32_(torch.arange(size, dtype=torch.int32, device=device))
            self.table[device] = table
        key = _int32(int(self.keys.integers(0, 1 << 32)))
        h = lowbias32_(table[:n].add(key))  # int32 addition wraps
        threshold = _int32((1 << 31) + round(p * (1 << 32)))  # h is uniform on [-2³¹, 2³¹)
        return h.ge_(threshold).view(shape) if p < 1 else torch.zeros(shape, dtype=torch.bool, device=device)

    def dropout(self, x: torch.Tensor, p: float, inplace: bool = False) -> torch.Tensor:
        scale = self.keep_mask(x.shape, p, x.device).to(x.dtype).mul_(1.0 / (1.0 - p) if p < 1 else 0.0)
        return x.mul_(scale) if inplace else x * scale

    def attention(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                  enable_gqa=False) -> torch.Tensor:
        """``F.scaled_dot_product_attention`` as its documented reference computation, with hashed dropout.
        The two matmuls run in the autocast dtype (as the fused kernels do), softmax and dropout in fp32; fully
        masked rows (padding queries) get uniform weights instead of NaN, and their outputs are never read."""
        if enable_gqa:
            rep = query.size(-3) // key.size(-3)
            key, value = key.repeat_interleave(rep, -3), value.repeat_interleave(rep, -3)
        scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
        scores = torch.matmul(query * scale, key.transpose(-2, -1)).float()
        if is_causal:
            causal = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool, device=query.device).tril()
            attn_mask = causal if attn_mask is None else attn_mask & causal
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                scores = scores.masked_fill(attn_mask.logical_not(), torch.finfo(scores.dtype).min)
            else:
                scores = scores + attn_mask
        probs = self.dropout(scores.softmax(-1), dropout_p)
        return torch.matmul(probs.to(value.dtype), value)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.dropout:
            bound = dict(zip(("input", "p", "training", "inplace"), args, strict=False), **kwargs)
            p = bound.get("p", 0.5)
            if bound.get("training", True) and p > 0:
                return self.dropout(bound["input"], p, bound.get("inplace", False))
            return bound["input"]
        if func is F.scaled_dot_product_attention:
            names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal")
            bound = dict(zip(names, args, strict=False), **kwargs)
            if bound.get("dropout_p", 0.0) > 0:
                return self.attention(**bound)
        return func(*args, **kwargs)
