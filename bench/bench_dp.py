"""DP-SGD step against a non-private step of the same model and batch: time and peak memory.

The model and LoRA settings are the privacy quick preset's (``extra.lora_rank`` 16 on the top 8 blocks,
batch 8, 64 tokens). A step = forward + backward + optimizer step. DP: Opacus' per-sample gradients
(hooks), clipping to C = 1 and Gaussian noise, exactly as ``train_lm`` sets them up (fixed batches here,
so both variants see the same rows). Each variant runs in its own process so that its peak memory
(peak resident memory during the steps minus resident memory before them) is its own.
Ratios = DP / non-private, measured in the same run; targets: <= 2x time and <= 2x memory.

Run: PYTHONPATH=$PWD/src .venv/bin/python bench/bench_dp.py [--quick]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import common
import numpy as np
import torch

TARGET = 2.0


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2 ** 20


def one_variant(model_name: str, dp: bool, steps: int, data_dir: str) -> dict:
    """Time ``steps`` training steps (after one warm-up step) of one variant; runs in a child process."""
    common.quiet()
    from w2strust.config.build import build_config
    from w2strust.models import build_causal_lm
    from w2strust.properties import get
    from w2strust.training.causal_lm import per_row_loss, prepare_model, tokenize

    cfg = build_config("privacy", "quick")
    opts = get("privacy").lm_options(cfg)
    bs, max_length = cfg.weak_train.batch_size, cfg.weak_train.max_length
    torch.manual_seed(0)
    model, tok = build_causal_lm(model_name)
    model = prepare_model(model, opts).train()
    texts = [t for t in common.sst2(data_dir, 400, 2)[0]["text"] if len(t.split()) > 12][:bs]
    ids, mask = tokenize(tok, texts, max_length)
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    if dp:
        from opacus import PrivacyEngine

        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ids, mask), batch_size=bs)
        model, optim, _ = PrivacyEngine().make_private(module=model, optimizer=optim, data_loader=loader,
                                                       noise_multiplier=1.0, max_grad_norm=opts.max_grad_norm,
                                                       poisson_sampling=False, grad_sample_mode="hooks")

    def step() -> None:
        loss = per_row_loss(model, ids, mask).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    step()
    before = rss_mib()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"seconds": float(np.median(times)), "peak_mib": common.peak_rss_mib() - before, "rss_mib": before,
            "trainable": trainable}


def main() -> None:
    ap = common.parser(__doc__)
    ap.add_argument("--variant", choices=["dp", "plain"], help="internal: run one variant in this process")
    ap.add_argument("--model")
    ap.add_argument("--steps", type=int)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(one_variant(args.model, args.variant == "dp", args.steps, args.data_dir)))
        return
    models = ["smollm2-135m"] if args.quick else ["smollm2-135m", "gemma3-270m"]
    steps = 5 if args.quick else 8
    print("# DP-SGD step vs non-private step (privacy quick preset: LoRA r16 on the top 8 blocks, batch 8, "
          "64 tokens)")
    print(f"machine: {common.machine()}; median of {steps} steps after a warm-up step\n")
    rows, ok = [], True
    for name in models:
        out = {}
        for variant in ("plain", "dp"):
            res = subprocess.run([sys.executable, __file__, "--variant", variant, "--model", name,
                                  "--steps", str(steps), "--data-dir", args.data_dir],
                                 capture_output=True, text=True, check=True)
            out[variant] = json.loads(res.stdout.strip().splitlines()[-1])
        t_ratio = out["dp"]["seconds"] / out["plain"]["seconds"]
        m_ratio = (out["dp"]["rss_mib"] + out["dp"]["peak_mib"]) / (out["plain"]["rss_mib"] + out["plain"]["peak_mib"])
        ok &= t_ratio <= TARGET and m_ratio <= TARGET
        rows.append({"model": name, "trainable params": out["plain"]["trainable"],
                     "step s (plain)": out["plain"]["seconds"], "step s (DP)": out["dp"]["seconds"],
                     "time DP/plain": f"x{t_ratio:.2f}",
                     "peak MiB (plain)": out["plain"]["rss_mib"] + out["plain"]["peak_mib"],
                     "peak MiB (DP)": out["dp"]["rss_mib"] + out["dp"]["peak_mib"],
                     "step memory MiB plain/DP": f"{out['plain']['peak_mib']:.0f}/{out['dp']['peak_mib']:.0f}",
                     "memory DP/plain": f"x{m_ratio:.2f}"})
    print(common.table(rows, list(rows[0])))
    print(f"\ntargets (<= x{TARGET} time and memory) {'met' if ok else 'missed'}")


if __name__ == "__main__":
    main()
