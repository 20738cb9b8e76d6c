"""Task losses: soft-target cross-entropy and the auxiliary confidence loss (paper eq. 1, Burns et al.)."""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -Σ_c t_c log softmax(z)_c; targets are probability rows (hard = one-hot)."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def alpha_at(step: int, total_steps: int, alpha_max: float, warmup_frac: float) -> float:
    """α ramps linearly from 0 to α_max over the first ``warmup_frac`` of training, then stays there.

    (The original weak-to-strong code jumps from 0 to α_max at the end of the warm-up; this ramps.)
    """
    warmup_steps = warmup_frac * total_steps
    if warmup_steps <= 0:
        return alpha_max
    return alpha_max * min(1.0, step / warmup_steps)


class AuxConfidenceLoss:
    """ℓ = (1−α)·CE(f(x), weak) + α·CE(f(x), harden(f(x))), α = alpha_at(step).

    Hardening (binary): the strong model's positive-class score is thresholded at the quantile that
    gives the weak labels' class balance ``positive_rate`` (the mean soft weak label on D_WTS, as the
    reference code's ``labels.mean()``), over the current batch (``buffer_size=0``, the reference) or a
    rolling buffer of the last ``buffer_size`` scores (for tiny batches; stale scores lag the model).
    With more than two classes the hardened label is the argmax.
    """

    def __init__(self, total_steps: int, alpha_max: float, warmup_frac: float, positive_rate: float,
                 buffer_size: int = 0):
        self.total_steps = total_steps
        self.alpha_max = alpha_max
        self.warmup_frac = warmup_frac
        self.positive_rate = positive_rate
        self.buffer: deque[float] = deque(maxlen=buffer_size or None)  # maxlen None: the current batch only
        self.step = 0
        self.last: dict[str, float | None] = {"alpha": None, "threshold": None}  # of the latest call

    def alpha(self) -> float:
        return alpha_at(self.step, self.total_steps, self.alpha_max, self.warmup_frac)

    def threshold(self) -> float:
        scores = torch.tensor(list(self.buffer))
        self.last["threshold"] = torch.quantile(scores, 1.0 - self.positive_rate).item()
        return self.last["threshold"]

    def hardened(self, logits: torch.Tensor) -> torch.Tensor:
        probs = logits.detach().float().softmax(-1)
        if probs.shape[-1] != 2:
            return F.one_hot(probs.argmax(-1), probs.shape[-1]).to(logits.dtype)
        if self.buffer.maxlen is None:  # buffer_size 0: the current batch only
            self.buffer.clear()
        self.buffer.extend(probs[:, 1].cpu().tolist())
        positive = (probs[:, 1] >= self.threshold()).long()
        return F.one_hot(positive, 2).to(logits.dtype)

    def __call__(self, logits: torch.Tensor, weak_targets: torch.Tensor) -> torch.Tensor:
        alpha = self.last["alpha"] = self.alpha()
        loss = soft_cross_entropy(logits, weak_targets)
        if alpha > 0:
            loss = (1 - alpha) * loss + alpha * soft_cross_entropy(logits, self.hardened(logits))
        elif self.alpha_max > 0:
            self.hardened(logits)  # keep filling the buffer during the α=0 start of the warm-up
        return loss

    def curve_values(self) -> dict[str, float | None]:
        """α and the hardening threshold of the latest step, for the training curve."""
        return dict(self.last)

    def advance(self) -> None:
        """Call once per optimiser step."""
        self.step += 1
