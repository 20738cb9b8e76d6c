"""One training loop for classifiers (soft targets, any property's loss hook) and batched prediction."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm

from ..config.schema import TrainConfig
from ..errors import raise_if_interrupted
from .batches import batch_order
from .curve import TrainingCurve
from .determinism import use_deterministic_kernels
from .dropout import PCG64Dropout
from .finite import check_loss
from .losses import soft_cross_entropy
from .optim import adamw_with_schedule, optimizer_step
from .precision import autocast, grad_scaler


class TokenCache:
    """Token ids of every text a stage sees, computed once per stage instead of once per batch.

    ``column`` -> {text: ids}: a dataset column is tokenised in one call the first time it is asked
    for; a text a property builds on the fly (not in the dataset) is tokenised when it first appears.
    """

    def __init__(self, tokenizer, max_length: int, ds: Dataset | None = None):
        self.tokenizer, self.max_length, self.ds = tokenizer, max_length, ds
        self.ids: dict[str, dict[str, list[int]]] = {}
        side = getattr(tokenizer, "padding_side", "right")
        self.left = side == "left"
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]

    def column(self, name: str) -> dict[str, list[int]]:
        if name not in self.ids:
            texts = list(dict.fromkeys(self.ds[name])) if self.ds is not None and name in self.ds.column_names else []
            self.ids[name] = dict(zip(texts, self._encode(texts), strict=True)) if texts else {}
        return self.ids[name]

    def lookup(self, texts: list[str], column: str = "text") -> list[list[int]]:
        known = self.column(column)
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            known.update(zip(missing, self._encode(missing), strict=True))
        return [known[t] for t in texts]

    def collate(self, rows: list[list[int]], device: torch.device) -> dict[str, torch.Tensor]:
        """Pad to the longest row of the batch (the tokenizer's padding side), as ``padding=True`` would."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            sl = slice(width - len(r), width) if self.left else slice(0, len(r))
            ids[i, sl] = torch.as_tensor(r)
            mask[i, sl] = 1
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def make_forward(model, tokens: TokenCache, device: torch.device, precision: str = "fp32"):
    """batch (dict of column lists) -> fp32 logits, for any text column of the batch."""

    def forward(batch: dict[str, list], column: str = "text") -> torch.Tensor:
        enc = tokens.collate(tokens.lookup(batch[column], column), device)
        with autocast(precision, device):
            logits = model(**enc).logits
        return logits.float()

    return forward


def train_classifier(model, tokenizer, ds: Dataset, targets: np.ndarray, tcfg: TrainConfig, prop, lam: float,
                     seed: int, device: torch.device, task_loss: Callable | None = None,
                     make_task_loss: Callable[[int], Callable] | None = None, desc: str = "train",
                     precision: str = "fp32", length_buckets: bool = True, dropout: str = "torch") -> dict:
    """Fine-tune ``model`` on rows of ``ds`` with soft ``targets`` (N x C) and ``prop``'s objective.

    ``make_task_loss(total_steps)`` builds a stateful loss (the auxiliary confidence loss); else
    ``task_loss`` (default soft cross-entropy). ``precision`` is a resolved name (``precision.resolve``).
    ``length_buckets=False``: random batches (for losses that depend on the batch's make-up, pipeline.batching).
    ``dropout="pcg64"``: masks from numpy's PCG64 (dropout.PCG64Dropout; the CPU default, pipeline.dropout_masks).
    Returns a small log (final loss, steps).

    Speed (bench/README.md): every text column is tokenised once, batches are shuffled length buckets
    (little padding), matmuls run under ``precision``'s autocast, and AdamW updates all parameters
    in one fused kernel; on the CPU, dropout masks come from numpy's PCG64 instead of PyTorch's slower generator.
    """
    use_deterministic_kernels()
    model.to(device).train()
    tokens = TokenCache(tokenizer, tcfg.max_length, ds)
    lengths = (np.asarray([len(r) for r in tokens.lookup(ds["text"])])
               if length_buckets and "text" in ds.column_names else None)
    batches = batch_order(len(ds), tcfg.batch_size, tcfg.epochs, seed, lengths)
    loss_fn = make_task_loss(len(batches)) if make_task_loss else (task_loss or soft_cross_entropy)
    curve = TrainingCurve(len(batches))
    cols = {c: ds[c] for c in ds.column_names}
    targets_t = torch.as_tensor(targets, dtype=torch.float32)
    params = [p for p in model.parameters() if p.requires_grad]
    optim, sched = adamw_with_schedule(params, tcfg, len(batches), fused=True)
    scaler = grad_scaler(precision, device)
    forward = make_forward(model, tokens, device, precision)
    losses: list[torch.Tensor] = []
    torch.manual_seed(seed)  # PyTorch's dropout masks (PCG64Dropout has its own generator, same seed)
    if dropout not in ("torch", "pcg64"):
        raise ValueError(f"dropout must be 'torch' or 'pcg64'; got {dropout!r}")
    masks = PCG64Dropout(seed) if dropout == "pcg64" else contextlib.nullcontext()
    bar = tqdm(batches, desc=desc, unit="step", leave=False, dynamic_ncols=True)
    with masks, prop.train_context(model, lam), bar:
        for idx in bar:
            raise_if_interrupted()  # one a finaliser swallowed (errors.py)
            batch = {c: [v[i] for i in idx] for c, v in cols.items()}
            loss = prop.train_loss(forward, batch, targets_t[idx].to(device), loss_fn, lam)
            optimizer_step(loss, optim, sched, scaler, params, tcfg.grad_clip, foreach=True)
            if hasattr(loss_fn, "advance"):
                loss_fn.advance()
            losses.append(loss.detach())
            value = losses[-1].item()
            check_loss(value, len(losses), len(batches), desc, tcfg.lr, lam)
            curve.add(len(losses), value, sched.get_last_lr()[0],
                      **(loss_fn.curve_values() if hasattr(loss_fn, "curve_values") else {}))
            if len(losses) % 10 == 0:
                bar.set_postfix(loss=f"{torch.stack(losses[-10:]).mean().item():.3f}")
    model.eval()
    return {"steps": len(batches), "final_loss": float(torch.stack(losses[-20:]).float().mean()),
            "precision": precision, "curve": curve.points}


def predict_proba(model, tokenizer, ds: Dataset, column: str, max_length: int, batch_size: int,
                  device: torch.device, desc: str = "predict", precision: str = "fp32") -> np.ndarray:
    """Class probabilities for ``ds[column]``, order kept (see ``predict_texts``)."""
    tokens = TokenCache(tokenizer, max_length, ds)
    return predict_texts(model, tokens, ds[column], batch_size, device, precision, column, desc)


def predict_texts(model, tokens: TokenCache, texts: list[str], batch_size: int, device: torch.device,
                  precision: str = "fp32", column: str = "text", desc: str | None = "predict") -> np.ndarray:
    """Class probabilities (N x C) in the order of ``texts``. Fast path: each text tokenised once, rows
    batched by token length (almost no padding), ``inference_mode``, ``precision``'s autocast.
    ``desc=None``: no progress bar."""
    model.to(device).eval()
    rows = tokens.lookup(list(texts), column)
    order = np.argsort([len(r) for r in rows], kind="stable")
    out = np.zeros((len(rows), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode(), autocast(precision, device):
        for start in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch", leave=False,
                          dynamic_ncols=True, disable=desc is None):
            idx = order[start:start + batch_size]
            enc = tokens.collate([rows[i] for i in idx], device)
            out[idx] = model(**enc).logits.float().softmax(-1).cpu().numpy()
    return out
