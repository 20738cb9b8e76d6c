"""Causal-LM fine-tuning (the privacy task), optionally with LoRA and with DP-SGD through Opacus.

One loop serves both cases so that the DP and non-DP models differ only in the privacy mechanism:
texts are tokenised once into fixed-length rows (Opacus' Poisson sampler needs a map-style dataset),
each row's loss is the mean next-token cross-entropy over its own tokens, and a batch's loss is the
mean over rows (Opacus scales per-sample gradients for ``loss_reduction="mean"``).

DP (paper eq. 6): ``PrivacyEngine.make_private_with_epsilon`` picks the noise multiplier σ that spends
the target ε at δ after the planned number of steps (Poisson sampling, rate q = batch / N); each
per-sample gradient is clipped to norm C, the sum gets N(0, σ²C²) noise, and the accountant (RDP by
default) reports the ε actually spent, which is what the metric ``epsilon`` stores. The optimiser
under the DP wrapper is AdamW by default (DP-Adam, as is usual for LM fine-tuning): the privacy guarantee
comes from clipping + noise and holds for any optimiser that only sees the noisy gradient.
``LMOptions.optimizer = "sgd"`` gives plain DP-SGD instead: with few, small batches the noise dwarfs the
clipped gradient on every coordinate, and Adam's per-coordinate normalisation turns that noise into
steps of size lr on every coordinate, so DP-Adam barely moves the loss where DP-SGD, whose noise only
costs through the curvature, learns (bench/README.md "DP recipes").

Whether a model learned is measured on its own training rows: the mean per-row loss over all of them,
in eval mode, before and after training (``train_loss_before`` / ``train_loss_after`` in the log). With a
few dozen e-mails the batch losses of the curve vary by more between batches than training moves them.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config.schema import TrainConfig
from ..errors import W2SError, raise_if_interrupted
from .batches import batch_order
from .curve import TrainingCurve
from .determinism import use_deterministic_kernels
from .finite import check_loss
from .optim import linear_schedule, optimizer_step
from .precision import autocast, grad_scaler


@dataclass
class LMOptions:
    """How a causal LM is fine-tuned; the privacy property fills it from ``cfg.extra``."""

    lora_rank: int = 0  # 0 = full fine-tuning; > 0 = LoRA adapters on every linear layer but the LM head
    lora_alpha: float = 0.0  # LoRA scaling numerator; 0 = 2 × rank
    lora_layers: int = 0  # LoRA on the top lora_layers blocks only (0 = all): backward stops below them
    freeze_embeddings: bool = True  # full fine-tuning only: keep the (often tied) token embeddings fixed
    delta: float = 1e-5  # DP δ
    max_grad_norm: float = 1.0  # DP per-sample clipping norm C
    accountant: str = "rdp"  # Opacus accountant: rdp | prv | gdp
    optimizer: str = "adamw"  # adamw | sgd (plain SGD, no momentum), with or without DP


OPTIMIZERS = ("adamw", "sgd")


def prepare_model(model: torch.nn.Module, opts: LMOptions) -> torch.nn.Module:
    """Choose the trainable parameters: LoRA adapters, or everything but the embeddings."""
    if opts.lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        n = model.config.num_hidden_layers
        top = list(range(max(0, n - opts.lora_layers), n)) if opts.lora_layers else None
        # every linear layer inside the transformer blocks (not the LM head), by its short name
        targets = sorted({k.rsplit(".", 1)[-1] for k, m in model.get_decoder().layers.named_modules()
                          if isinstance(m, torch.nn.Linear)})
        config = LoraConfig(r=opts.lora_rank, lora_alpha=opts.lora_alpha or 2 * opts.lora_rank, lora_dropout=0.0,
                            target_modules=targets, layers_to_transform=top, bias="none", task_type="CAUSAL_LM")
        with warnings.catch_warnings():
            # peft reads transformers' deprecated `is_gradient_checkpointing` (a FutureWarning from inside peft,
            # nothing a user can act on; it goes with transformers 6)
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
            return get_peft_model(model, config)
    if opts.freeze_embeddings:
        # Per-sample gradients of a 50k-260k-row embedding (tied with the LM head in SmolLM2 and Gemma)
        # dominate DP memory and time, and Opacus cannot clip a parameter shared by two modules.
        for module in (model.get_input_embeddings(), model.get_output_embeddings()):
            if module is not None:
                for p in module.parameters():
                    p.requires_grad_(False)
    return model


def finish_model(model: torch.nn.Module) -> torch.nn.Module:
    """Undo the training wrappers: Opacus' GradSampleModule, then merge LoRA into the base weights."""
    model = getattr(model, "_module", model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model.eval()


def tokenize(tokenizer, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` (N x L, L = longest row up to ``max_length``)."""
    tokenizer.padding_side = "right"
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def token_nll(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """NLL of every next token, (B, L-1), from logits (B, L, V), in fp32.

    The cross-entropy runs over the flat, contiguous (B·L, V) logits, the last position's target ignored:
    the (B, V, L) layout that 3-D ``cross_entropy`` wants (or a ``[:, :-1]`` slice before it) is a strided
    softmax and a copy of B·L·V floats, 5-10x slower for Gemma's 262k-token vocabulary (half a training step)."""
    b, length, vocab = logits.shape
    target = torch.nn.functional.pad(input_ids[:, 1:], (0, 1), value=-100)
    nll = torch.nn.functional.cross_entropy(logits.float().reshape(-1, vocab), target.reshape(-1),
                                            reduction="none", ignore_index=-100)
    return nll.view(b, length)[:, :-1]


def per_row_loss(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL of each row over its real (non-pad) tokens: shape (B,)."""
    nll = token_nll(model(input_ids=input_ids, attention_mask=attention_mask).logits, input_ids)
    mask = attention_mask[:, 1:].to(nll.dtype)
    return (nll * mask).sum(1) / mask.sum(1).clamp(min=1)


@torch.no_grad()
def mean_row_loss(model, ids: torch.Tensor, mask: torch.Tensor, batch_size: int, precision: str,
                  device: torch.device) -> float:
    """The training objective over all rows, in eval mode (no dropout): the mean of ``per_row_loss``."""
    was_training = model.training
    model.eval()
    losses = []
    for i in range(0, len(ids), batch_size):
        with autocast(precision, device):
            losses.append(per_row_loss(model, ids[i:i + batch_size].to(device), mask[i:i + batch_size].to(device)))
    model.train(was_training)
    return float(torch.cat(losses).mean())


def make_optimizer(params: list[torch.nn.Parameter], tcfg: TrainConfig, name: str) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    raise W2SError(f"unknown optimizer '{name}'; choose from {', '.join(OPTIMIZERS)}")


def train_causal_lm(model, tokenizer, texts: list[str], tcfg: TrainConfig, opts: LMOptions, epsilon: float,
                    seed: int, device: torch.device, desc: str = "train",
                    precision: str = "fp32") -> tuple[torch.nn.Module, dict]:
    """Fine-tune on ``texts``; DP-SGD with target ``epsilon`` when it is > 0. Returns (model ready for eval, log).

    ``precision`` (resolved, see ``precision.py``) is the autocast of the forward pass; DP-SGD runs in
    fp32 only (Opacus computes per-sample gradients from the layers' activations in their dtype)."""
    if len(texts) < 2:
        raise W2SError(f"causal-LM training needs at least 2 texts, got {len(texts)}")
    use_deterministic_kernels()
    if epsilon > 0 and precision != "fp32":
        raise W2SError(f"DP-SGD training runs in fp32; got precision={precision}: set precision=fp32 (or auto)")
    torch.manual_seed(seed)  # LoRA initialisation, dropout
    model = prepare_model(model, opts).to(device)
    model.train()
    ids, mask = tokenize(tokenizer, texts, tcfg.max_length)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optim = make_optimizer(trainable, tcfg, opts.optimizer)  # the schedule comes below, on what DP wraps
    log: dict = {"n_texts": len(texts), "trainable_params": int(sum(p.numel() for p in trainable)),
                 "lm_options": asdict(opts), "dp": epsilon > 0, "precision": precision,
                 "train_loss_before": mean_row_loss(model, ids, mask, tcfg.batch_size, precision, device)}
    losses: list[float] = []
    engine = None
    if epsilon > 0:
        model, optim, engine, batches, n_steps = _make_private(model, optim, ids, mask, tcfg, opts, epsilon, seed,
                                                                log)
    else:
        order = batch_order(len(ids), tcfg.batch_size, tcfg.epochs, seed)
        batches, n_steps = ((ids[i], mask[i]) for i in order), len(order)
    steps = 0
    scaler = grad_scaler(precision, device)
    # Opacus' hooks warn when no *input* needs a gradient (frozen embeddings): expected, not a problem.
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    sched = linear_schedule(optim, tcfg, n_steps)  # on the optimiser DP may have wrapped
    curve = TrainingCurve(n_steps)  # points on the steps that had rows (an empty Poisson batch has no loss)
    with tqdm(total=n_steps, desc=desc, unit="step", leave=False, dynamic_ncols=True) as bar:
        for b_ids, b_mask in batches:
            raise_if_interrupted()  # one a finaliser swallowed (errors.py)
            bar.update(1)
            steps += 1
            if len(b_ids) == 0:  # an empty Poisson batch: DPOptimizer still adds noise and counts the step
                optim.zero_grad(set_to_none=True)
                for p in optim.params:  # zero per-sample gradients of no rows, as Opacus' own empty batches give
                    p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
                optim.step()
                sched.step()
                continue
            with autocast(precision, device):
                loss = per_row_loss(model, b_ids.to(device), b_mask.to(device)).mean()
            # fp16 (never DP) scales the loss; DP clips per sample instead of the whole gradient
            optimizer_step(loss, optim, sched, scaler, trainable, tcfg.grad_clip if engine is None else 0.0)
            losses.append(loss.item())
            check_loss(losses[-1], steps, n_steps, desc, tcfg.lr, epsilon, dp_epsilon=epsilon > 0)
            curve.add(steps, losses[-1], sched.get_last_lr()[0])
            if len(losses) % 5 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-5:]):.3f}")
    log["steps"] = steps
    log["final_loss"] = float(np.mean(losses[-20:])) if losses else float("nan")
    log["curve"] = curve.points
    if engine is not None:
        log["epsilon"] = float(engine.get_epsilon(opts.delta))
    model = finish_model(model)
    log["train_loss_after"] = mean_row_loss(model, ids, mask, tcfg.batch_size, precision, device)
    return model, log


@lru_cache(maxsize=64)
def noise_multiplier(epsilon: float, delta: float, sample_rate: float, epochs: int, accountant: str) -> float:
    """σ such that ``epochs`` epochs of Poisson sampling at ``sample_rate`` spend (ε, δ) (Opacus' search)."""
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        # At a σ the search probes far from its answer the best RDP order is the largest one tried, so Opacus advises
        # more orders (seen at ε = 8, q = 0.25, 4 epochs); that says nothing of the σ it returns. The spent ε of the
        # trained model (``engine.get_epsilon`` at the end of training) is computed without this filter and still
        # warns if it is ever that loose.
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        try:
            return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                              epochs=epochs, accountant=accountant))
        except ValueError as e:  # Opacus: "The privacy budget is too low." (no σ up to 1e6 spends only ε)
            raise W2SError(f"DP-SGD: no noise multiplier spends only ε={epsilon:g} at δ={delta:g} over {epochs} "
                           f"epoch(s) at sampling rate {sample_rate:.4g} with the {accountant} accountant ({e}); raise "
                           f"the stage's lambda_* (ε) or extra.delta, or use fewer epochs") from None


def _make_private(model, optim, ids, mask, tcfg: TrainConfig, opts: LMOptions, epsilon: float, seed: int, log: dict):
    from opacus import PrivacyEngine

    # Seeded (non-secure) noise is deliberate here, see below; Opacus warns about it on every run.
    warnings.filterwarnings("ignore", message="Secure RNG turned off")

    if tcfg.epochs != int(tcfg.epochs):
        raise W2SError(f"DP training needs a whole number of epochs (the accountant plans by epoch); got {tcfg.epochs}")
    dataset = torch.utils.data.TensorDataset(ids, mask)
    # Poisson sampling draws from the loader's generator (Opacus falls back to it outside secure_mode; with
    # none it would use the global RNG, whose state depends on everything that ran before in the process).
    loader = torch.utils.data.DataLoader(dataset, batch_size=tcfg.batch_size,
                                         generator=torch.Generator().manual_seed(seed))
    engine = PrivacyEngine(accountant=opts.accountant)
    epochs = int(tcfg.epochs)
    # What make_private_with_epsilon does, with the σ search cached (it costs seconds per call and
    # the weak, WTS and ceiling stages of a run usually share ε, δ, q and epochs).
    sigma = noise_multiplier(epsilon, opts.delta, 1 / len(loader), epochs, engine.accountant.mechanism())
    # A seeded generator makes sampling and noise reproducible (experiments, not a deployment:
    # a deployment would use Opacus' secure_mode).
    generator = torch.Generator().manual_seed(seed + 2**32)  # the noise: a stream of its own
    model, optim, dp_loader = engine.make_private(
        module=model, optimizer=optim, data_loader=loader, noise_multiplier=sigma, max_grad_norm=opts.max_grad_norm,
        poisson_sampling=True, noise_generator=generator, grad_sample_mode="hooks")
    log.update(noise_multiplier=float(optim.noise_multiplier), sample_rate=float(dp_loader.sample_rate),
               target_epsilon=epsilon, delta=opts.delta, max_grad_norm=opts.max_grad_norm,
               accountant=opts.accountant)

    def batches():
        for _ in range(epochs):
            yield from dp_loader

    return model, optim, engine, batches(), epochs * len(dp_loader)
