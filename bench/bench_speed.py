"""Speed of the two hot paths this project optimises, each against its plain baseline in the same run.

1. Prediction: rows batched by length (less padding; ``train.predict_proba``) vs rows in dataset order.
2. Bootstrap trust metric: the numpy DPD used per resample (``Fairness.trust_value``) vs fairlearn's
   ``demographic_parity_difference``.

Run: .venv/bin/python bench/bench_speed.py [--model minilm-l6] [--rows 1024] [--data-dir ../shared/data]
Prints times and speed-up ratios (baseline time / optimised time) and checks that outputs agree.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np
import torch


def sst2_sentences(data_dir: str, n: int, seed: int = 0) -> list[str]:
    """SST-2 training phrases: lengths from 1 to ~50 words, as in the OOD property's data."""
    with open(Path(data_dir) / "sst2/glue/train.tsv", newline="") as f:
        rows = [r[0] for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][1:]
    idx = np.random.default_rng(seed).permutation(len(rows))[:n]
    return [rows[i] for i in idx]


@torch.no_grad()
def predict_in_order(model, tok, texts: list[str], batch: int, max_length: int) -> np.ndarray:
    out = []
    for s in range(0, len(texts), batch):
        enc = tok(texts[s:s + batch], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        out.append(model(**enc).logits.softmax(-1).numpy())
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--data-dir", default=os.environ.get("W2STRUST_DATA", "../shared/data"))
    args = ap.parse_args()

    from datasets import Dataset
    from fairlearn.metrics import demographic_parity_difference
    from transformers.utils import logging

    from w2strust.models import build_classifier
    from w2strust.properties.fairness import Fairness
    from w2strust.training.classifier import predict_proba

    logging.set_verbosity_error()
    torch.manual_seed(0)
    model, tok = build_classifier(args.model)
    model.eval()
    texts = sst2_sentences(args.data_dir, args.rows)
    ds = Dataset.from_dict({"text": texts})
    t_base, p_base = timed(lambda: predict_in_order(model, tok, texts, args.batch, 128))
    t_opt, p_opt = timed(lambda: predict_proba(model, tok, ds, "text", 128, args.batch, torch.device("cpu"), "bench"))
    assert np.allclose(p_base, p_opt, atol=1e-4), "length-sorted prediction changed the outputs"
    print(f"predict {args.rows} SST-2 rows with {args.model} (batch {args.batch}, {torch.get_num_threads()} threads):")
    print(f"  dataset order {t_base:.2f}s  length-sorted {t_opt:.2f}s  speed-up x{t_base / t_opt:.2f}")

    rng = np.random.default_rng(0)
    n, resamples = 3000, 200
    prob = rng.random(n)
    preds = {"prob": np.stack([1 - prob, prob], 1)}
    cols = {"label": rng.integers(0, 2, n), "group": rng.integers(0, 2, n)}
    idxs = [rng.integers(0, n, n) for _ in range(resamples)]
    prop = Fairness()
    t_fl, v_fl = timed(lambda: [demographic_parity_difference(cols["label"][i], (prob[i] >= 0.5).astype(int),
                                                              sensitive_features=cols["group"][i]) for i in idxs])
    t_np, v_np = timed(lambda: [prop.trust_value(*prop.resample(preds, cols, i)) for i in idxs])
    assert np.allclose(v_fl, v_np), "fast DPD differs from fairlearn"
    print(f"bootstrap DPD, {resamples} resamples of {n} rows:")
    print(f"  fairlearn {t_fl:.2f}s  numpy {t_np:.3f}s  speed-up x{t_fl / t_np:.1f}")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


if __name__ == "__main__":
    main()
