"""The optimiser setup and step shared by both training loops (classifier and causal LM): AdamW with a linear
warm-up/decay schedule, optional fp16 loss scaling and gradient clipping."""

from __future__ import annotations

import torch

from ..config.schema import TrainConfig


def adamw_with_schedule(params: list[torch.nn.Parameter], tcfg: TrainConfig, total_steps: int,
                        fused: bool | None = None):
    """AdamW over ``params`` and its linear schedule (``tcfg.lr_warmup`` of the steps warm up, then linear decay).
    ``fused=True``: one kernel for all parameters (the classifier loop; the causal-LM loop keeps PyTorch's
    default, which Opacus' DP optimiser wraps)."""
    optim = torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay, fused=fused)
    return optim, linear_schedule(optim, tcfg, total_steps)


def linear_schedule(optim, tcfg: TrainConfig, total_steps: int):
    from transformers import get_linear_schedule_with_warmup  # here: importing it pulls in peft (~2.5 s)

    return get_linear_schedule_with_warmup(optim, int(tcfg.lr_warmup * total_steps), total_steps)


def optimizer_step(loss: torch.Tensor, optim, sched, scaler: torch.amp.GradScaler | None,
                   params: list[torch.nn.Parameter], grad_clip: float, foreach: bool | None = None) -> None:
    """Backward, clip the gradient norm to ``grad_clip`` (0: no clipping; DP clips per sample instead and passes 0),
    step the optimiser and the schedule; with a ``scaler`` (fp16) the loss is scaled and unscaled around it."""
    optim.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optim)
    else:
        loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=foreach)
    if scaler is not None:
        scaler.step(optim)
        scaler.update()
    else:
        optim.step()
    sched.step()
