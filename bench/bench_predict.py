"""Labelling / evaluation throughput: ``train.predict_proba`` against a batched loop with fixed padding.

Baseline: the plain loop (tokenise each batch, ``padding="max_length"``, fp32, ``torch.no_grad``).
w2strust: each text tokenised once, rows sorted by token length (almost no padding), ``inference_mode``,
autocast of the precision ``auto`` resolves to (also shown in fp32, to separate the two effects).
Checks: the fp32 path gives the baseline's probabilities (to 1e-4), the auto path its labels (>= 99%).
Ratio = baseline time / w2strust time, measured in the same run.

Run: PYTHONPATH=$PWD/src .venv/bin/python bench/bench_predict.py [--quick]
"""

from __future__ import annotations

import common
import numpy as np
import torch

TARGET = 2.0
CPU = torch.device("cpu")


@torch.no_grad()
def fixed_padding(model, tok, texts: list[str], batch: int, max_length: int) -> np.ndarray:
    out = []
    for s in range(0, len(texts), batch):
        enc = tok(texts[s:s + batch], padding="max_length", truncation=True, max_length=max_length,
                  return_tensors="pt")
        out.append(model(**enc).logits.softmax(-1).numpy())
    return np.concatenate(out)


def main() -> None:
    ap = common.parser(__doc__)
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    common.quiet()
    from w2strust.models import build_classifier
    from w2strust.training.classifier import predict_proba
    from w2strust.training.precision import resolve

    auto = resolve("auto", torch.device("cpu"))
    n = 1000 if args.quick else 4000
    torch.manual_seed(0)
    model, tok = build_classifier(args.model, 2)
    model.eval()
    print(f"# labelling throughput: {args.model}, {n} rows, batch {args.batch}")
    print(f"machine: {common.machine()}; precision auto = {auto}\n")
    ok = True
    for name, (ds, max_length) in {"Adult text": (common.adult_text(args.data_dir, n, 2)[0], 72),
                                   "SST-2 phrases": (common.sst2(args.data_dir, n, 2)[0], 64)}.items():
        texts = list(ds["text"])
        t_base, p_base = common.timed(fixed_padding, model, tok, texts, args.batch, max_length)
        t_fp32, p_fp32 = common.timed(predict_proba, model, tok, ds, "text", max_length, args.batch, CPU, None, "fp32")
        t_auto, p_auto = common.timed(predict_proba, model, tok, ds, "text", max_length, args.batch, CPU, None, auto)
        diff = float(np.abs(p_base - p_fp32).max())
        agree = float((p_base.argmax(-1) == p_auto.argmax(-1)).mean())
        ok &= diff < 1e-4 and agree >= 0.99 and t_base / t_auto >= TARGET
        rows = [{"method": "fixed padding (fp32)", "seconds": t_base, "rows/s": n / t_base, "speed-up": "x1.00"},
                {"method": "w2strust fp32", "seconds": t_fp32, "rows/s": n / t_fp32,
                 "speed-up": f"x{t_base / t_fp32:.2f}", "vs baseline": f"max abs diff {diff:.1e}"},
                {"method": f"w2strust {auto} (auto)", "seconds": t_auto, "rows/s": n / t_auto,
                 "speed-up": f"x{t_base / t_auto:.2f}", "vs baseline": f"same label {agree:.1%}"}]
        print(f"## {name} (max_length {max_length})")
        print(common.table(rows, ["method", "seconds", "rows/s", "speed-up", "vs baseline"]) + "\n")
    print(f"target >= x{TARGET} {'met' if ok else 'missed'} (and outputs checked)")


if __name__ == "__main__":
    main()
