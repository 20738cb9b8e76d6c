"""Training recipes for the bundled encoders: learning rate x classifier head (cls pooler vs masked mean).

Each configuration trains for a fixed number of optimiser steps (batch 32) on a fixed training subset and is
evaluated on fixed held-out rows (the split comes from ``--split-seed``; the run seed only changes the batch order,
the dropout masks and the head's initialisation). Recorded per run: held-out accuracy, the plateau exit (first step
at which the trailing 8-step mean training loss is below 0.6), the final loss (mean of the last 20 steps), seconds.

Grid A: SST-2 sentences (stsa.binary.train), 2,048 train / 600 eval rows, max_length 64, 128 steps.
Grid B: Adult as text, 2,000 pool rows / 1,500 test rows, max_length 72, 125 steps.
Grid C: grid B at 188 steps (2,000 rows x 3 epochs, the quick fairness preset's weak model): does any weak model stay
well below minilm-l6 once trained that long?
Grid D: Adult at the `full` preset's scale, 16,000 rows x 2 epochs (1,000 steps at batch 32): which weak model stays
3 points below minilm-l6's ~86.5% there (the earlier H200 run of the full preset)?
Grids E / F: Adult, 500 / 1,000 rows x 3 epochs (48 / 94 steps): a weak supervisor weaker by data, not by size.
Grid G: Adult, 6,000 rows x 1 epoch (188 steps, as many as grid C): a ceiling that sees more distinct rows.
Grid H: Adult, 2,000 rows x 1 epoch (63 steps): weak models trained for one epoch.
Results go to ``--out`` after every run; a rerun skips the runs already in that file. One torch thread, one run
at a time. Example::

    PYTHONPATH=$PWD/src HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false .venv/bin/python bench/bench_recipes.py \\
        --out bench/results-recipes.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
import types
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
DATA_DIR = os.environ.get("W2STRUST_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
GRIDS = {  # grid -> (dataset, n_train, n_eval, max_length, steps)
    "A": ("sst2", 2048, 600, 64, 128),
    "B": ("adult", 2000, 1500, 72, 125),
    "C": ("adult", 2000, 1500, 72, 188),
    "D": ("adult", 16000, 1500, 72, 1000),
    "E": ("adult", 500, 1500, 72, 48),
    "F": ("adult", 1000, 1500, 72, 94),
    "G": ("adult", 6000, 1500, 72, 188),
    "H": ("adult", 2000, 1500, 72, 63),
}
# (grid, model, lr, head), most decision-relevant first
FULL = [
    ("A", "minilm-l6", 2e-4, "cls"), ("A", "minilm-l6", 5e-5, "cls"), ("A", "minilm-l3", 1e-4, "cls"),
    ("A", "minilm-l6", 2e-4, "mean"), ("A", "minilm-l3", 1e-4, "mean"), ("A", "minilm-l6", 1e-4, "cls"),
    ("A", "minilm-l3", 2e-4, "cls"), ("A", "minilm-l6", 1e-4, "mean"), ("A", "minilm-l3", 2e-4, "mean"),
    ("A", "minilm-l6", 5e-5, "mean"), ("A", "mpnet-base", 5e-5, "cls"), ("A", "mpnet-base", 1e-4, "cls"),
    ("B", "minilm-l3", 2e-4, "cls"), ("B", "minilm-l6", 1e-4, "cls"), ("B", "minilm-l6", 2e-4, "cls"),
    ("B", "tiny-bert", 1e-3, "cls"),
    # weaker weak models (minilm-l3 cut to its first layers), for a wider gap to minilm-l6
    ("A", "minilm-l1", 2e-4, "cls"), ("A", "minilm-l2", 2e-4, "cls"), ("B", "minilm-l1", 2e-4, "cls"),
    ("B", "minilm-l2", 2e-4, "cls"), ("A", "minilm-l1", 1e-4, "cls"), ("B", "minilm-l1", 1e-4, "cls"),
    ("A", "minilm-l1", 5e-4, "cls"), ("B", "minilm-l1", 5e-4, "cls"), ("A", "minilm-l1", 1e-3, "cls"),
    ("B", "minilm-l1", 1e-3, "cls"),
    ("C", "tiny-bert-wide", 1e-3, "cls"), ("C", "tiny-bert-wide", 3e-3, "cls"), ("C", "minilm-l1", 5e-4, "cls"),
    ("C", "minilm-l6", 1e-4, "cls"),
    # is a larger strong model more than 3 points above them on Adult, or does every encoder saturate?
    ("C", "mpnet-base", 5e-5, "cls"),
    # a weak model for the fairness `full` preset (all of Adult), where every pretrained encoder reaches ~86-87%
    ("D", "tiny-bert-wide", 1e-3, "cls"), ("D", "tiny-bert", 1e-3, "cls"),
    # a weak supervisor weaker by data: the quick preset's weak model on fewer rows (3 epochs)
    ("E", "minilm-l3", 2e-4, "cls"), ("E", "minilm-l1", 5e-4, "cls"),
    ("F", "minilm-l3", 2e-4, "cls"), ("F", "minilm-l1", 5e-4, "cls"),
    # a ceiling that sees more distinct rows in the same 188 steps (1 epoch of 6,000), against weak models at 1 epoch
    ("G", "minilm-l6", 1e-4, "cls"), ("H", "minilm-l3", 2e-4, "cls"),
]
QUICK = [c for c in FULL if c[0] == "A" and c[1] != "mpnet-base" and c[3] == "cls"]


class MeanHead(torch.nn.Module):
    """The checkpoint's encoder with a fresh linear head on the attention-masked mean of the last hidden state."""

    def __init__(self, model, num_labels: int = 2):
        super().__init__()
        self.config = model.config
        self.encoder = getattr(model, model.base_model_prefix)  # BertModel / MPNetModel
        if hasattr(self.encoder, "pooler"):
            self.encoder.pooler = None  # unused: no tanh pooler in the forward pass
        self.dropout = torch.nn.Dropout(0.1)
        self.classifier = torch.nn.Linear(model.config.hidden_size, num_labels)

    def get_input_embeddings(self):
        return self.encoder.get_input_embeddings()

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return types.SimpleNamespace(logits=self.classifier(self.dropout(pooled)))


def load_split(name: str, n_train: int, n_eval: int, split_seed: int, data_dir: str):
    """(train, eval) Datasets with text/label columns, fixed by ``split_seed``."""
    if name == "sst2":
        from w2strust.data.sst2 import load_sst2_sentences

        ds = load_sst2_sentences(data_dir)
        perm = np.random.default_rng(split_seed).permutation(len(ds))
        return ds.select(perm[:n_train]), ds.select(perm[n_train:n_train + n_eval])
    from w2strust.data.adult import load_adult

    pool, test = load_adult(data_dir)
    rng = np.random.default_rng(split_seed)
    return (pool.select(rng.permutation(len(pool))[:n_train]).select_columns(["text", "label"]),
            test.select(rng.permutation(len(test))[:n_eval]).select_columns(["text", "label"]))


def plateau_exit(curve: list[dict], threshold: float = 0.6, window: int = 8) -> int | None:
    """First step at which the mean loss over the last ``window`` steps is below ``threshold``."""
    steps = [p["step"] for p in curve]
    per_step = np.repeat([p["loss"] for p in curve], np.diff([0] + steps))  # curve points average their steps
    for s in range(window, len(per_step) + 1):
        if per_step[s - window:s].mean() < threshold:
            return s
    return None


def run_one(grid: str, model_name: str, lr: float, head: str, seed: int, args) -> dict:
    from w2strust.config.schema import TrainConfig
    from w2strust.models import build_classifier
    from w2strust.properties.base import TrustProperty
    from w2strust.training.classifier import predict_proba, train_classifier

    data, n_train, n_eval, max_length, steps = GRIDS[grid]
    train, evals = load_split(data, n_train, n_eval, args.split_seed, args.data_dir)
    torch.manual_seed(seed)  # same head initialisation stream for both heads
    model, tok = build_classifier(model_name, 2)
    if head == "mean":
        torch.manual_seed(seed)
        model = MeanHead(model, 2)
    labels = np.asarray(train["label"])
    targets = np.eye(2, dtype=np.float32)[labels]
    epochs = (steps - 0.5) / -(-n_train // 32)  # batch_order takes ceil(epochs * batches per epoch) = steps
    tcfg = TrainConfig(lr=lr, epochs=epochs, batch_size=32, max_length=max_length, lr_warmup=0.1)
    device = torch.device("cpu")
    t0 = time.perf_counter()
    log = train_classifier(model, tok, train, targets, tcfg, TrustProperty(), 0.0, seed, device,
                           precision="bf16", length_buckets=True, dropout="pcg64")
    t_train = time.perf_counter() - t0
    prob = predict_proba(model, tok, evals, "text", max_length, 128, device, precision="bf16")
    acc = float((prob.argmax(1) == np.asarray(evals["label"])).mean())
    return {"grid": grid, "model": model_name, "lr": lr, "head": head, "seed": seed, "steps": log["steps"],
            "accuracy": acc, "majority": float(max(np.mean(evals["label"]), 1 - np.mean(evals["label"]))),
            "plateau_exit": plateau_exit(log["curve"]), "final_loss": log["final_loss"],
            "train_s": round(t_train, 1), "seconds": round(time.perf_counter() - t0, 1), "curve": log["curve"]}


def key(r) -> tuple:
    return (r["grid"], r["model"], r["lr"], r["head"], r["seed"])


def table(results: list[dict]) -> str:
    rows = ["| grid | model | lr | head | acc seed 0 | acc seed 1 | mean | plateau exit (s0/s1) | final loss "
            "(s0/s1) | seconds (s0/s1) |", "|---|---|---|---|---|---|---|---|---|---|"]
    configs = list(dict.fromkeys(key(r)[:4] for r in results))
    for c in configs:
        by_seed = {r["seed"]: r for r in results if key(r)[:4] == c}
        runs = [by_seed.get(s) for s in (0, 1)]

        def cell(f, fmt, runs=runs):
            return " / ".join("-" if r is None else ("never" if r[f] is None else format(r[f], fmt)) for r in runs)

        accs = [r["accuracy"] for r in runs if r is not None]
        rows.append(f"| {c[0]} | {c[1]} | {c[2]:g} | {c[3]} | "
                    + " | ".join("-" if r is None else f"{100 * r['accuracy']:.1f}" for r in runs)
                    + f" | {100 * np.mean(accs):.1f} | {cell('plateau_exit', 'd')} | {cell('final_loss', '.3f')} | "
                    f"{cell('seconds', '.0f')} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="Grid A, cls heads, minilm models only")
    ap.add_argument("--grid", choices=sorted(GRIDS), help="only this grid")
    ap.add_argument("--models", nargs="*", help="only these models")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--split-seed", type=int, default=1234)
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--out", type=Path, default=Path("results-recipes.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    from transformers.utils import logging

    logging.set_verbosity_error()
    results = json.loads(args.out.read_text())["runs"] if args.out.exists() else []
    done = {key(r) for r in results}
    for grid, model_name, lr, head in QUICK if args.quick else FULL:
        if (args.grid and grid != args.grid) or (args.models and model_name not in args.models):
            continue
        for seed in args.seeds:
            if (grid, model_name, lr, head, seed) in done:
                continue
            r = run_one(grid, model_name, lr, head, seed, args)
            results.append(r)
            args.out.write_text(json.dumps({"cpu_threads": 1, "runs": results}, indent=1))
            print(f"{grid} {model_name} lr={lr:g} {head} seed={seed}: acc {100 * r['accuracy']:.1f} "
                  f"exit {r['plateau_exit']} loss {r['final_loss']:.3f} {r['seconds']:.0f}s", flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
