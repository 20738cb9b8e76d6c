"""Dropout masks: hashed (``dropout.HashDropout``, what classifier stages use on the CPU) against PyTorch's.

The same training stage both ways (``train_classifier``: minilm-l6, Adult text, the fairness objective with
λ = 3, random batches of 32 as fairness trains, precision auto), alternating for ``--rounds`` rounds; each
keeps its fastest round. Also times the masks alone on one attention-probability tensor (32 × 12 × 72 × 72).
Ratio = PyTorch time / hashed time (> 1: hashed is faster). Test accuracy after training is printed for both:
the masks differ, so the two runs are two draws of the same method and agree within seed noise, not exactly.

Run: PYTHONPATH=$PWD/src .venv/bin/python bench/bench_dropout.py [--quick] [--rounds R]
"""

from __future__ import annotations

import common
import numpy as np
import torch
import torch.nn.functional as F

CPU = torch.device("cpu")


def mask_only(rounds: int = 20) -> tuple[float, float]:
    from w2strust.dropout import HashDropout

    x = torch.randn(32, 12, 72, 72)
    mode = HashDropout(0)

    def torch_masks():
        for _ in range(rounds):
            F.dropout(x, 0.1, True)

    def hashed_masks():
        with mode:
            for _ in range(rounds):
                F.dropout(x, 0.1, True)

    torch_masks(), hashed_masks()  # warm up (the hash table is built once)
    return common.timed(torch_masks)[0] / rounds, common.timed(hashed_masks)[0] / rounds


def stage(train, test, dropout: str, seed: int) -> tuple[float, float]:
    from w2strust.config import TrainConfig
    from w2strust.models import build_classifier
    from w2strust.precision import resolve
    from w2strust.properties import get
    from w2strust.train import predict_proba, train_classifier

    torch.manual_seed(seed)
    model, tok = build_classifier("minilm-l6", 2)
    targets = np.eye(2, dtype=np.float32)[np.asarray(train["label"])]
    tcfg = TrainConfig(lr=1e-4, epochs=1, batch_size=32, max_length=72)
    sec, _ = common.timed(train_classifier, model, tok, train, targets, tcfg, get("fairness"), 3.0, seed, CPU,
                          precision=resolve("auto", CPU), length_buckets=False, dropout=dropout)
    prob = predict_proba(model, tok, test, "text", 72, 128, CPU, desc=None)
    return sec, float((prob.argmax(-1) == np.asarray(test["label"])).mean())


def main() -> None:
    ap = common.parser(__doc__)
    ap.add_argument("--rounds", type=int, help="alternating rounds (default 1 with --quick, else 2)")
    args = ap.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 2)
    common.quiet()
    n = 1000 if args.quick else 2000
    train, test = common.adult_text(args.data_dir, n, 1000)
    print(f"# dropout masks: minilm-l6, {n} Adult rows, batch 32, 1 epoch, fairness λ = 3, random batches")
    print(f"machine: {common.machine()}\n")
    t_torch, t_hash = mask_only()
    print(f"one dropout call on 32x12x72x72: PyTorch {t_torch * 1e3:.1f} ms, hashed {t_hash * 1e3:.1f} ms "
          f"(x{t_torch / t_hash:.2f})\n")
    best = {"torch": (float("inf"), 0.0), "hash": (float("inf"), 0.0)}
    for _ in range(args.rounds):
        for dropout in best:
            sec, acc = stage(train, test, dropout, seed=0)
            best[dropout] = (min(best[dropout][0], sec), acc)
    rows = [{"dropout masks": name, "train seconds (fastest)": sec, "test acc.": acc,
             "speed-up": f"x{best['torch'][0] / sec:.2f}"} for name, (sec, acc) in best.items()]
    print(common.table(rows, ["dropout masks", "train seconds (fastest)", "test acc.", "speed-up"]))


if __name__ == "__main__":
    main()
