"""Training throughput: w2strust's ``train_classifier`` against ``transformers.Trainer`` at equal accuracy.

Same model (minilm-l6 from the same seed), same rows, batch size, epochs, learning rate, linear decay,
gradient clipping 1.0 and max_length; every model is then scored on the same held-out rows by the same
fp32 prediction code, so the accuracies compare the training alone. Timed: tokenisation + training.
Baselines: the Trainer's defaults (random batches, ``DataCollatorWithPadding``, fp32), its
``train_sampling_strategy="group_by_length"``, and, for reference, its own mixed precision (``bf16=True``).
Ratios are baseline time / w2strust time (> 1: w2strust is faster), measured in the same run; with
``--rounds`` R > 1 the methods alternate and round r uses seed r everywhere (classifier head, batch order,
the Trainer's seed): each method keeps its fastest round, and its accuracy is the mean ± std over the R seeds,
so "equal accuracy" is judged against seed noise (rounds of the same seed would only repeat one draw).

Run: PYTHONPATH=$PWD/src .venv/bin/python bench/bench_train.py [--quick] [--rounds 3] [--data sst2]
"""

from __future__ import annotations

import tempfile

import common
import numpy as np
import torch

TARGETS = {"Trainer (defaults)": 1.3, "Trainer group_by_length": 1.1}


def build(name: str, seed: int = 0):
    from w2strust.models import build_classifier

    torch.manual_seed(seed)
    return build_classifier(name, 2)


def ours(model, tok, train, bs, epochs, lr, max_length, precision, seed=0):
    from w2strust.config.schema import TrainConfig
    from w2strust.properties.base import TrustProperty
    from w2strust.training.classifier import train_classifier

    targets = np.eye(2, dtype=np.float32)[np.asarray(train["label"])]
    tcfg = TrainConfig(lr=lr, epochs=epochs, batch_size=bs, max_length=max_length)
    train_classifier(model, tok, train, targets, tcfg, TrustProperty(), 0.0, seed, torch.device("cpu"),
                     precision=precision, dropout="pcg64")  # as stages train on the CPU (experiment.plan.dropout_masks)


def trainer(model, tok, train, bs, epochs, lr, max_length, seed=0, **extra):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    ds = train.map(lambda b: tok(b["text"], truncation=True, max_length=max_length), batched=True)
    ds = ds.rename_column("label", "labels").select_columns(["input_ids", "attention_mask", "labels"])
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=bs, num_train_epochs=epochs,
                                 learning_rate=lr, save_strategy="no", report_to="none", logging_strategy="no",
                                 disable_tqdm=True, seed=seed, use_cpu=True, **extra)
        Trainer(model=model, args=args, train_dataset=ds, data_collator=DataCollatorWithPadding(tok)).train()


def accuracy(model, tok, test, max_length) -> float:
    from w2strust.training.classifier import predict_proba

    p = predict_proba(model, tok, test, "text", max_length, 128, torch.device("cpu"), desc=None)
    return float((p.argmax(-1) == np.asarray(test["label"])).mean())


def main() -> None:
    ap = common.parser(__doc__)
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--rows", type=int, help="training rows (default 1000 with --quick, else 2000)")
    ap.add_argument("--data", choices=("both", "adult", "sst2"), default="both", help="which data set(s) to train on")
    args = ap.parse_args()
    common.quiet()
    from w2strust.training.precision import resolve

    auto = resolve("auto", torch.device("cpu"))
    n, epochs = (1000, 1) if args.quick else (2000, 2)
    n = args.rows or n
    setups = {}
    if args.data in ("both", "adult"):
        setups["Adult text"] = (common.adult_text(args.data_dir, n, 1000), 72)
    if args.data in ("both", "sst2"):
        setups["SST-2"] = (common.sst2(args.data_dir, n, 872), 64)
    print(f"# training throughput: {args.model}, {n} rows, batch 32, {epochs} epoch(s), lr 1e-4")
    print(f"machine: {common.machine()}; w2strust precision auto = {auto}\n")
    methods = {
        f"w2strust ({auto}, auto)": lambda m, t, d, L, s: ours(m, t, d, 32, epochs, 1e-4, L, auto, s),
        "Trainer (defaults)": lambda m, t, d, L, s: trainer(m, t, d, 32, epochs, 1e-4, L, s),
        "Trainer group_by_length": lambda m, t, d, L, s: trainer(m, t, d, 32, epochs, 1e-4, L, s,
                                                                  train_sampling_strategy="group_by_length"),
        "w2strust (fp32)": lambda m, t, d, L, s: ours(m, t, d, 32, epochs, 1e-4, L, "fp32", s),
        "Trainer bf16=True": lambda m, t, d, L, s: trainer(m, t, d, 32, epochs, 1e-4, L, s, bf16=True),
    }
    ok = True
    for data_name, ((train, test), max_length) in setups.items():
        best: dict[str, float] = {}
        accs: dict[str, list[float]] = {name: [] for name in methods}
        for seed in range(args.rounds):
            for name, fn in methods.items():
                model, tok = build(args.model, seed)
                sec, _ = common.timed(fn, model, tok, train, max_length, seed)
                best[name] = min(sec, best.get(name, float("inf")))
                accs[name].append(accuracy(model, tok, test, max_length))
        acc = {name: float(np.mean(a)) for name, a in accs.items()}
        sd = {name: float(np.std(a, ddof=1)) if len(a) > 1 else 0.0 for name, a in accs.items()}
        ref = next(iter(methods))
        rows = []
        for name in methods:
            ratio = best[name] / best[ref]
            target = TARGETS.get(name)
            rows.append({"method": name, "seconds": best[name], "rows/s": len(train) * epochs / best[name],
                         "test accuracy": f"{acc[name]:.3f} ± {sd[name]:.3f}" if args.rounds > 1 else acc[name],
                         "w2strust speed-up": f"x{ratio:.2f}",
                         "target": f">= x{target}" if target else ""})
            if target and ratio < target:
                ok = False
        print(f"## {data_name} (max_length {max_length}, test rows {len(test)})")
        print(common.table(rows, ["method", "seconds", "rows/s", "test accuracy", "w2strust speed-up", "target"]))
        gap = max(abs(acc[ref] - acc[b]) for b in TARGETS)
        noise = f" (seed std of w2strust's accuracy: {sd[ref]:.3f}, {args.rounds} seeds)" if args.rounds > 1 else ""
        print(f"largest accuracy gap to the Trainer baselines: {gap:.3f}{noise}\n")
    print("targets met" if ok else "a target was missed (see the table)")


if __name__ == "__main__":
    main()
