"""Shared pieces of the benchmarks: the data, timing, peak memory, the machine's matmul peak, FLOP utilisation.

Every benchmark measures its baseline in the same process run, so the ratios it prints hold on a busy
machine too (absolute seconds do not). Run from the repository root with the package importable, e.g.
``PYTHONPATH=$PWD/src .venv/bin/python bench/bench_train.py --quick``.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

DATA_DIR = os.environ.get("W2STRUST_DATA", str(Path(__file__).resolve().parents[1] / "../shared/data"))


def quiet() -> None:
    import warnings

    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TQDM_DISABLE", "1")


def parser(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (the whole suite in < 20 minutes)")
    ap.add_argument("--data-dir", default=DATA_DIR)
    return ap


def adult_text(data_dir: str, n_train: int, n_test: int, seed: int = 0):
    """(train, test) Adult rows serialised as text, as the fairness property trains on them."""
    from w2strust.data import split_pool, subsample
    from w2strust.data.adult import load_adult

    pool, test = load_adult(data_dir)
    train, _ = split_pool(pool, n_train, 2, seed)
    return train, subsample(test, n_test, seed)


def sst2(data_dir: str, n_train: int, n_test: int, seed: int = 0):
    """(train, test): GLUE SST-2 training phrases (1 to ~50 words) and dev sentences."""
    from datasets import Dataset

    def read(name: str) -> Dataset:
        with open(Path(data_dir) / "sst2/glue" / name, newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
        return Dataset.from_dict({"text": [r[0] for r in rows], "label": [int(r[1]) for r in rows]})

    train, test = read("train.tsv"), read("dev.tsv")
    rng = np.random.default_rng(seed)
    return (train.select(rng.permutation(len(train))[:n_train]),
            test.select(rng.permutation(len(test))[:n_test]))


def timed(fn, *args, **kwargs):
    """(seconds, result) of ``fn(*args, **kwargs)``."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak_gflops(dtype: torch.dtype = torch.float32, n: int = 1536, reps: int = 6) -> float:
    """Best of ``reps`` square matmuls on this machine (all of torch's threads): the utilisation denominator."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(timed(lambda: a @ b)[0] for _ in range(reps))
    return 2 * n ** 3 / best / 1e9


def matmul_params(model: torch.nn.Module) -> int:
    """Parameters that take part in matmuls: all but the embedding tables (a lookup costs no FLOPs)."""
    emb = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in emb)


def train_gflops(model: torch.nn.Module, tokens: int) -> float:
    """6 x params x tokens (forward 2, backward 4 FLOPs per parameter and token), in GFLOP."""
    return 6 * matmul_params(model) * tokens / 1e9


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from w2strust.training.precision import cpu_has_native_bf16

    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"native bf16: {cpu_has_native_bf16()}")


def table(rows: list[dict], cols: list[str]) -> str:
    """A Markdown table (the benchmarks print these; bench/README.md copies them)."""
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
