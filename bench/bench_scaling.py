"""Scaling of one training stage: time and peak memory against rows and model size, with FLOP utilisation.

A stage here = ``train_classifier`` on Adult text (the fairness property's objective with its penalty,
λ = 3, batch 32, 1 epoch, max_length 72) in the precision ``auto`` picks. Each point runs in its own
process, so its peak memory is its own. Utilisation = 6 x matmul parameters (embedding tables excluded:
a lookup costs no FLOPs) x real (non-padding) tokens / wall time, against the best square matmul this
machine does in the same precision, measured in the same run. Linear cost in the data shows as a
constant seconds per 1k rows.

Run: PYTHONPATH=$PWD/src .venv/bin/python bench/bench_scaling.py [--quick]
"""

from __future__ import annotations

import json
import subprocess
import sys

import common
import numpy as np
import torch


def one_point(model_name: str, rows: int, data_dir: str) -> dict:
    common.quiet()
    from w2strust.config.schema import TrainConfig
    from w2strust.models import build_classifier
    from w2strust.properties import get
    from w2strust.training.classifier import TokenCache, predict_proba, train_classifier
    from w2strust.training.precision import resolve

    prec = resolve("auto", torch.device("cpu"))
    train, _ = common.adult_text(data_dir, rows, 2)
    torch.manual_seed(0)
    model, tok = build_classifier(model_name, 2)
    targets = np.eye(2, dtype=np.float32)[np.asarray(train["label"])]
    tcfg = TrainConfig(lr=1e-4, epochs=1, batch_size=32, max_length=72)
    tokens = sum(len(r) for r in TokenCache(tok, 72, train).lookup(train["text"]))
    sec, _ = common.timed(train_classifier, model, tok, train, targets, tcfg, get("fairness"), 3.0, 0,
                          torch.device("cpu"), precision=prec, dropout="pcg64")
    peak = common.peak_rss_mib()
    # labelling speed of the trained model (the preset estimate below needs it): 1,000 Adult rows
    pred_sec, _ = common.timed(predict_proba, model, tok, common.adult_text(data_dir, 1000, 2)[0], "text", 72, 128,
                               torch.device("cpu"), None, prec)
    return {"seconds": sec, "peak_mib": peak, "gflop": common.train_gflops(model, tokens),
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "precision": prec,
            "predict_s_per_1k": pred_sec}


def main() -> None:
    ap = common.parser(__doc__)
    ap.add_argument("--point", nargs=2, metavar=("MODEL", "ROWS"), help="internal: one point in this process")
    args = ap.parse_args()
    if args.point:
        print(json.dumps(one_point(args.point[0], int(args.point[1]), args.data_dir)))
        return
    from w2strust.models import availability
    from w2strust.training.precision import DTYPES, resolve

    prec = resolve("auto", torch.device("cpu"))
    peak = common.matmul_peak_gflops(DTYPES.get(prec, torch.float32))
    sizes = [250, 500, 1000, 2000] if args.quick else [1000, 2000, 4000, 8000]
    model_rows = 256 if args.quick else 1000
    models = [m for m in ("tiny-bert", "tiny-bert-wide", "minilm-l3", "minilm-l6", "mpnet-base")
              if availability(m).startswith(("ready", "installed"))] or ["minilm-l6"]
    print(f"# one stage vs rows (minilm-l6) and vs model size ({model_rows} rows); precision {prec}")
    print(f"machine: {common.machine()}; matmul peak ({prec}) {peak:.0f} GFLOP/s\n")

    raw: dict[tuple[str, int], dict] = {}

    def point(model: str, rows: int) -> dict:
        res = subprocess.run([sys.executable, __file__, "--point", model, str(rows), "--data-dir", args.data_dir],
                             capture_output=True, text=True, check=True)
        r = raw[model, rows] = json.loads(res.stdout.strip().splitlines()[-1])
        return {"model": model, "params (M)": r["params_m"], "rows": rows, "seconds": r["seconds"],
                "s / 1k rows": 1000 * r["seconds"] / rows, "peak MiB": r["peak_mib"],
                "GFLOP/s": r["gflop"] / r["seconds"], "utilisation": f"{r['gflop'] / r['seconds'] / peak:.0%}"}

    cols = ["model", "params (M)", "rows", "seconds", "s / 1k rows", "peak MiB", "GFLOP/s", "utilisation"]
    by_rows = [point("minilm-l6", n) for n in sizes]
    print("## rows\n" + common.table(by_rows, cols))
    per_k = [r["s / 1k rows"] for r in by_rows]
    print(f"seconds per 1k rows from {min(per_k):.1f} to {max(per_k):.1f} (constant = linear in the data)\n")
    print("## model size\n" + common.table([point(m, model_rows) for m in models], cols))
    print("\n" + preset_estimate(raw, sizes[-1], point))


def preset_estimate(raw: dict, rows: int, point) -> str:
    """The fairness quick preset's wall time from these per-stage rates (not a run of the preset).

    Its stages: 2 weak (minilm-l3, 2,000 rows x 3 epochs, λ 0 and 3), 1 strong ceiling (minilm-l6,
    3,500 rows x 2 epochs), 6 WTS (minilm-l6, 1,500 rows x 2 epochs); each predicts D_T (2,000 rows),
    the weak ones also label D_WTS (1,500 rows).
    """
    if ("minilm-l3", rows) not in raw:
        point("minilm-l3", rows)
    l3, l6 = raw["minilm-l3", rows], raw["minilm-l6", rows]

    def per_row(r):
        return r["seconds"] / rows

    train = 2 * 2000 * 3 * per_row(l3) + (3500 * 2 + 6 * 1500 * 2) * per_row(l6)
    predict = (2 * 3500 * l3["predict_s_per_1k"] + 7 * 2000 * l6["predict_s_per_1k"]) / 1000
    return (f"fairness quick preset, estimated from these rates (training {train / 60:.1f} min + prediction "
            f"{predict / 60:.1f} min, without model loading and the report): {(train + predict) / 60:.1f} min "
            f"(target <= 15 min on a quiet machine; the rates above are this run's, on a busy machine they are slower)")


if __name__ == "__main__":
    main()
