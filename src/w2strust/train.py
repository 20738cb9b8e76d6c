"""One training loop for classifiers (soft targets, any property's loss hook) and batched prediction."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .config import TrainConfig
from .train_curve import TrainingCurve


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_forward(model, tokenizer, max_length: int, device: torch.device):
    """batch (dict of column lists) -> logits, for any text column of the batch."""

    def forward(batch: dict[str, list], column: str = "text") -> torch.Tensor:
        enc = tokenizer(list(batch[column]), padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(device)
        return model(**enc).logits

    return forward


def batch_order(n: int, batch_size: int, epochs: float, seed: int) -> list[np.ndarray]:
    """Index batches for ``epochs`` passes (a fractional last epoch is a prefix of a new permutation)."""
    rng = np.random.default_rng(seed)
    total = max(1, math.ceil(epochs * math.ceil(n / batch_size)))
    batches: list[np.ndarray] = []
    while len(batches) < total:
        perm = rng.permutation(n)
        batches.extend(perm[i:i + batch_size] for i in range(0, n, batch_size))
    return batches[:total]


def train_classifier(model, tokenizer, ds: Dataset, targets: np.ndarray, tcfg: TrainConfig, prop, lam: float,
                     seed: int, device: torch.device, task_loss: Callable | None = None,
                     make_task_loss: Callable[[int], Callable] | None = None, desc: str = "train") -> dict:
    """Fine-tune ``model`` on rows of ``ds`` with soft ``targets`` (N x C) and ``prop``'s objective.

    ``make_task_loss(total_steps)`` builds a stateful loss (the auxiliary confidence loss); else
    ``task_loss`` (default soft cross-entropy). Returns a small log (final loss, steps).
    """
    from .losses import soft_cross_entropy

    model.to(device).train()
    batches = batch_order(len(ds), tcfg.batch_size, tcfg.epochs, seed)
    loss_fn = make_task_loss(len(batches)) if make_task_loss else (task_loss or soft_cross_entropy)
    curve = TrainingCurve(len(batches))
    cols = {c: ds[c] for c in ds.column_names}
    targets_t = torch.as_tensor(targets, dtype=torch.float32)
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=tcfg.lr,
                              weight_decay=tcfg.weight_decay)
    sched = get_linear_schedule_with_warmup(optim, int(tcfg.lr_warmup * len(batches)), len(batches))
    forward = make_forward(model, tokenizer, tcfg.max_length, device)
    losses: list[float] = []
    torch.manual_seed(seed)  # dropout masks
    with prop.train_context(model, lam), tqdm(batches, desc=desc, unit="step", leave=False, dynamic_ncols=True) as bar:
        for idx in bar:
            batch = {c: [v[i] for i in idx] for c, v in cols.items()}
            loss = prop.train_loss(forward, batch, targets_t[idx].to(device), loss_fn, lam)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            optim.step()
            sched.step()
            if hasattr(loss_fn, "advance"):
                loss_fn.advance()
            losses.append(loss.item())
            curve.add(len(losses), losses[-1], sched.get_last_lr()[0],
                      **(loss_fn.curve_values() if hasattr(loss_fn, "curve_values") else {}))
            if len(losses) % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
    model.eval()
    return {"steps": len(batches), "final_loss": float(np.mean(losses[-20:])), "curve": curve.points}


@torch.no_grad()
def predict_proba(model, tokenizer, ds: Dataset, column: str, max_length: int, batch_size: int,
                  device: torch.device, desc: str = "predict") -> np.ndarray:
    """Class probabilities for ``ds[column]``; rows are batched by length (less padding), order kept."""
    model.to(device).eval()
    texts = list(ds[column])
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", leave=False, dynamic_ncols=True):
        idx = order[start:start + batch_size]
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(device)
        out[idx] = model(**enc).logits.float().softmax(-1).cpu().numpy()
    return out
