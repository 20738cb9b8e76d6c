"""Dropout masks: numpy's PCG64 (``dropout.PCG64Dropout``, what classifier stages use on the CPU) against PyTorch's.

The same training stage both ways (``train_classifier``: minilm-l6, Adult text, the fairness objective with
λ = 3, random batches of 32 as fairness trains, precision auto), alternating for ``--rounds`` rounds; each
keeps its fastest round. Also times the masks alone on one attention-probability tensor (32 × 12 × 72 × 72).
The mask timing also runs the lowbias32 counter hash of the previous version (int32 tensor ops), on one thread and on
all of them. Ratio = PyTorch time / PCG64 time (> 1: PCG64 is faster). Test accuracy after training is printed for both:
the masks differ, so the two runs are two draws of the same method and agree within seed noise, not exactly.

Run: PYTHONPATH=$PWD/src .venv/bin/python bench/bench_dropout.py [--quick] [--rounds R]
"""

from __future__ import annotations

import common
import numpy as np
import torch
import torch.nn.functional as F

CPU = torch.device("cpu")


def lowbias32_(h: torch.Tensor) -> torch.Tensor:
    """The previous version's hash, in place on int32 (wrapping): x ^= x >>> 16; x *= M1; x ^= x >>> 15; x *= M2;
    x ^= x >>> 16. Its masks were lowbias32(lowbias32(i) + key) >= threshold."""
    h.bitwise_xor_(h.bitwise_right_shift(16).bitwise_and_(0xFFFF))
    h.mul_(0x7FEB352D)
    h.bitwise_xor_(h.bitwise_right_shift(15).bitwise_and_(0x1FFFF))
    h.mul_(0x846CA68B - (1 << 32))
    h.bitwise_xor_(h.bitwise_right_shift(16).bitwise_and_(0xFFFF))
    return h


def mask_only(threads: int, rounds: int = 20) -> dict[str, float]:
    """Seconds per dropout call (mask and apply) on a 32 × 12 × 72 × 72 tensor (one attention-probability dropout)
    with ``threads``."""
    from w2strust.training.dropout import PCG64Dropout

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    x = torch.randn(32, 12, 72, 72)
    mode = PCG64Dropout(0)
    table = lowbias32_(torch.arange(x.numel(), dtype=torch.int32))  # built once per run in the previous version
    threshold = round(0.1 * (1 << 32)) - (1 << 31)

    def hashed():  # the previous version's dropout call: its mask, applied as PCG64Dropout.dropout applies one
        return x * lowbias32_(table.add(7)).ge_(threshold).view(x.shape).to(x.dtype).mul_(1 / 0.9)

    fns = {"PyTorch": lambda: F.dropout(x, 0.1, True),  # each: draw the mask and apply it, as a dropout call does
           "lowbias32 hash (previous)": hashed, "PCG64": lambda: mode.dropout(x, 0.1)}
    out = {}
    for name, fn in fns.items():
        fn()  # warm up
        out[name] = common.timed(lambda f=fn: [f() for _ in range(rounds)])[0] / rounds
    torch.set_num_threads(before)
    return out


def stage(train, test, dropout: str, seed: int) -> tuple[float, float]:
    from w2strust.config.schema import TrainConfig
    from w2strust.models import build_classifier
    from w2strust.properties import get
    from w2strust.training.classifier import predict_proba, train_classifier
    from w2strust.training.precision import resolve

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
    for threads in dict.fromkeys((1, torch.get_num_threads())):
        t = mask_only(threads)
        print(f"one dropout call on 32x12x72x72, {threads} thread(s): "
              + ", ".join(f"{name} {sec * 1e3:.1f} ms (x{t['PyTorch'] / sec:.2f})" for name, sec in t.items()))
    print()
    best = {"torch": (float("inf"), 0.0), "pcg64": (float("inf"), 0.0)}
    for _ in range(args.rounds):
        for dropout in best:
            sec, acc = stage(train, test, dropout, seed=0)
            best[dropout] = (min(best[dropout][0], sec), acc)
    rows = [{"dropout masks": name, "train seconds (fastest)": sec, "test acc.": acc,
             "speed-up": f"x{best['torch'][0] / sec:.2f}"} for name, (sec, acc) in best.items()]
    print(common.table(rows, ["dropout masks", "train seconds (fastest)", "test acc.", "speed-up"]))


if __name__ == "__main__":
    main()
