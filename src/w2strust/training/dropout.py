"""Dropout masks from numpy's PCG64 generator on the CPU: the same Bernoulli(1 − p) dropout, several times cheaper.

Why: PyTorch draws CPU dropout masks with a Mersenne twister (``bernoulli_``, about 7 ns per element on one core).
In a minilm training step on the 2-core CPU that was 14-17% of the step (profile: bench/README.md). numpy's
PCG64 (its default generator) gives 64 random bits in about 1.5 ns, so a mask is ``u >= round(p · 2³²)`` over
uniform 32-bit words ``u`` (two per 64-bit draw): one dropout call on a 32 × 12 × 72 × 72 attention tensor takes
5.6 ms instead of PyTorch's 23.0 ms on one thread (``bench/bench_dropout.py``). The keep rate is 1 − p to 2⁻³³.
One generator per training run, seeded by the stage's seed, draws every mask in order, so the same seed gives the
same masks bit for bit whatever the number of threads (the generator is serial).

``PCG64Dropout(seed)`` is a torch function mode: inside it every ``F.dropout`` and every
``F.scaled_dot_product_attention`` with ``dropout_p > 0`` (attention-probability dropout, whatever the model
architecture) uses these masks. Everything else passes through untouched. The classifier training loop uses it
on the CPU (``pipeline.dropout_masks`` records it in the stage key); GPUs keep PyTorch's own dropout (Philox,
already fast).

An earlier version hashed a counter with lowbias32 in int32 tensor ops: 8.5 ms per such call on one thread
(3.7 ms on two, where it used both threads and PCG64 takes 4.8 ms); mask time in a single-threaded minilm-l6
step went from 68.6 to 43.7 ms.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


class PCG64Dropout(TorchFunctionMode):
    """Within ``with PCG64Dropout(seed):`` dropout uses masks from a seeded PCG64 stream (module docstring)."""

    def __init__(self, seed: int):
        super().__init__()
        self.bits = np.random.PCG64([seed, 0x5EED])  # every mask of one training run, in order
        self.mask: torch.Tensor | None = None  # the last bool attention mask and its additive form (``additive``)
        self.mask_version = -1
        self.bias: torch.Tensor | None = None

    def keep_mask(self, shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
        """Bool tensor of ``shape``, each element True with probability 1 − p."""
        n = math.prod(shape)
        threshold = round(p * (1 << 32))  # u uniform on [0, 2³²): P(u >= threshold) = 1 − threshold / 2³²
        if threshold >= 1 << 32:
            return torch.zeros(shape, dtype=torch.bool, device=device)
        words = self.bits.random_raw((n + 1) // 2).view(np.uint32)[:n]  # both halves of each 64-bit draw
        return torch.from_numpy(words >= np.uint32(threshold)).view(shape).to(device)

    def dropout(self, x: torch.Tensor, p: float, inplace: bool = False) -> torch.Tensor:
        scale = self.keep_mask(x.shape, p, x.device).to(x.dtype).mul_(1.0 / (1.0 - p) if p < 1 else 0.0)
        return x.mul_(scale) if inplace else x * scale

    def additive(self, mask: torch.Tensor) -> torch.Tensor:
        """A bool attention mask (True = attend) as 0 / float32 min to add to the scores: the same softmax as
        filling the masked scores with min, and a broadcast add is several times cheaper than a broadcast
        ``masked_fill`` on the CPU (0.5 vs 4.4 ms per minilm layer, and its backward is free). Models pass one mask
        object to every layer, so the last one is kept (with its version: a mask changed in place is redone)."""
        if self.mask is not mask or self.mask_version != mask._version:
            self.mask, self.mask_version = mask, mask._version
            self.bias = torch.zeros(mask.shape, device=mask.device).masked_fill_(mask.logical_not(),
                                                                              torch.finfo(torch.float32).min)
        return self.bias

    def attention(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                  enable_gqa=False) -> torch.Tensor:
        """``F.scaled_dot_product_attention`` as its documented reference computation, with these masks.
        The two matmuls run in the autocast dtype (as the fused kernels do), softmax and dropout in fp32; fully
        masked rows (padding queries) get uniform weights instead of NaN (every score becomes float32 min), and
        their outputs are never read."""
        if enable_gqa:
            rep = query.size(-3) // key.size(-3)
            key, value = key.repeat_interleave(rep, -3), value.repeat_interleave(rep, -3)
        scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
        scores = torch.matmul(query * scale, key.transpose(-2, -1)).float()
        if is_causal:
            causal = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool, device=query.device).tril()
            attn_mask = causal if attn_mask is None else attn_mask & causal
        if attn_mask is not None:
            scores = scores.add_(self.additive(attn_mask) if attn_mask.dtype == torch.bool else attn_mask)  # fresh
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
