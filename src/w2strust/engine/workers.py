"""Entry points that run inside executor processes (local worker processes, Ray tasks).

Kept free of heavy imports at module level: a local worker's initializer must set its progress-bar
row before ``tqdm`` is first imported (tqdm reads ``TQDM_*`` defaults from the environment at import).
"""

from __future__ import annotations

import os

_SLOT: dict[str, object] = {}


def init_local_worker(slots, devices: list[str], threads: int) -> None:
    """Initializer of a local worker process: take a free slot, which fixes its device and bar row."""
    slot = slots.get()
    _SLOT.update(index=slot, device=devices[slot], threads=threads)
    os.environ["TQDM_POSITION"] = str(slot + 1)  # row 0 is the study's overall bar
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import threading

    from tqdm import tqdm

    # tqdm's default write lock holds a multiprocessing semaphore, created in this worker and shared with no other
    # process; a worker terminated at Ctrl-C / SIGTERM leaves it behind, and Python's resource tracker then
    # prints "leaked semaphore objects" after w2strust's last line. A thread lock does the same job here.
    tqdm.set_lock(threading.RLock())
    import torch

    torch.set_num_threads(threads)
    quiet_libraries()


def run_in_local_worker(cfg, stage, cache_root: str) -> dict:
    from .run_stage import run_stage  # here: a worker imports torch only after its initializer ran

    info = run_stage(cfg, stage, cache_root, device=str(_SLOT["device"]), threads=int(_SLOT["threads"]))
    return {**info, "slot": _SLOT["index"]}


def run_in_ray_task(cfg, stage, cache_root: str, device: str | None, threads: int) -> dict:
    import ray

    from .run_stage import run_stage  # here: the task's process imports torch when the task runs

    quiet_libraries()
    if device == "cuda" and ray.get_gpu_ids():
        device = "cuda:0"  # Ray sets CUDA_VISIBLE_DEVICES to this task's GPU(s)
    return run_stage(cfg, stage, cache_root, device=device, threads=threads)


def quiet_libraries() -> None:
    """transformers' warnings and bars, and datasets' bars: each filter / select of a few hundred rows drew one
    ("Flattening the indices", 50 lines in one quick run) between w2strust's own stage bars and results."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
