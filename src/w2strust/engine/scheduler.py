"""One dependency graph of stages, run by an executor: in this process, in local worker processes, or as
Ray tasks. The scheduler only schedules: it never knows what a property is (``run_stage.run_stage`` does
the work, and takes the stage's lock, so every executor gets the cache's guarantees).

A stage starts as soon as the stage it depends on (a WTS model's weak model) is in the cache and a
slot is free. A stage whose worker dies (killed, out of memory, a lost node) is retried up to
``retries`` times; an exception raised by the stage itself stops the run (it would fail again). Local
workers share one pool, which ends every stage in flight when one worker dies: those stages are not
charged a retry but rerun one at a time, so the limit (and the error naming a stage) falls on the stage
whose own worker dies, not on the ones that ran beside it.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import W2SError, raise_if_interrupted
from .audit import version_drift
from .cache import StageCache
from .main_guard import require_main_guard
from .ray_connect import connect
from .run_stage import run_stage
from .stage import Stage
from .workers import init_local_worker, run_in_local_worker, run_in_ray_task

EXECUTORS = ("local", "ray")
CONFIRM_ABOVE = 1000  # stages to train: more than this needs `yes` (--yes), after a look with --dry-run


@dataclass
class Job:
    """A stage to run, with the config it belongs to (any config that plans it gives the same result), a label
    for logs and the files that make it usable once cached (``run_stage.required_files``)."""
    stage: Stage
    cfg: Any  # config.ExperimentConfig
    label: str
    needs: tuple[str, ...] = ("preds.npz",)

    @property
    def key(self) -> str:
        return self.stage.key


@dataclass
class ExecutorOptions:
    executor: str = "local"  # local | ray
    workers: int = 1  # local: worker processes (1 = this process); ray: most stages in flight (0 = no cap)
    per_gpu: int = 1  # stages sharing one GPU
    threads: int = 0  # CPU threads per stage; 0 = the cores split between workers (ray: 1)
    ray_address: str | None = None  # None: a local Ray (or the one already initialised); "auto" / HOST:PORT
    retries: int = 2  # times a stage is retried after its worker died
    ray_timeout: float = 60.0  # seconds to wait for a Ray cluster at ray_address to answer
    ray_logs: bool = False  # show Ray's own log lines (hidden by default)
    yes: bool = False  # train more than CONFIRM_ABOVE stages

    def check(self) -> None:
        if self.executor not in EXECUTORS:
            raise W2SError(f"--executor must be one of {', '.join(EXECUTORS)}, got '{self.executor}'")
        if self.workers < (0 if self.executor == "ray" else 1) or self.per_gpu < 1 or self.threads < 0:
            raise W2SError(f"--workers must be >= 1, --per-gpu >= 1 and --threads >= 0; got workers={self.workers}, "
                           f"per_gpu={self.per_gpu}, threads={self.threads}")
        if not self.ray_timeout > 0:
            raise W2SError(f"--ray-timeout must be a positive number of seconds; got {self.ray_timeout}")
        if self.retries < 0:
            raise W2SError(f"--retries must be >= 0 (times a stage is retried after its worker died); got "
                           f"{self.retries}")

    def stage_threads(self) -> int:
        """CPU threads each stage runs with: ``--threads``, else the cores split between the local workers (Ray: 1;
        this process alone: the threads torch has). On the CPU the count is part of a stage's key
        (``pipeline.cpu_threads``: the numbers depend on it)."""
        if self.threads:
            return self.threads
        if self.executor == "ray":
            return 1
        if self.workers > 1:
            return max(1, (os.cpu_count() or 1) // self.workers)
        import torch

        return torch.get_num_threads()


class WorkerDied(Exception):
    """The process running a stage went away (the stage itself did not fail). ``alongside``: how many other
    stages were ended with it because they shared its process pool (0: it died alone, so it is to blame)."""

    def __init__(self, message: str, alongside: int = 0):
        super().__init__(message)
        self.alongside = alongside


def label(job_cfg, stage) -> str:
    aux = f"-aux α={stage.spec['aux']['alpha_max']:g}" if stage.spec.get("aux") else ""
    return f"{job_cfg.property} seed {stage.seed} {stage.kind}{aux} {stage.spec['model']} λ={stage.spec['lambda']:g}"


def run_jobs(jobs: Iterable[Job], cache_root: Path, options: ExecutorOptions | None = None,
             log_path: Path | None = None, desc: str = "stages") -> list[dict[str, Any]]:
    """Bring every job's stage into the cache; return the stage-log records of the stages trained now."""
    options = options or ExecutorOptions()
    options.check()
    by_key: dict[str, Job] = {}
    for job in jobs:
        by_key.setdefault(job.key, job)  # deduplicated by content key: shared stages run once
    cache = StageCache(cache_root)
    cache.clean_stale()
    log = StageLog(log_path)
    done = {k for k, j in by_key.items() if cache.problem(j.stage.dirname, j.needs) is None}
    pending = [k for k in by_key if k not in done]  # in planning order (weak models first)
    if len(pending) > CONFIRM_ABOVE and not options.yes:
        raise W2SError(f"{len(pending):,} stages to train ({len(done):,} cached), more than {CONFIRM_ABOVE:,}: "
                       f"check the plan and its time with --dry-run, then run again with --yes")
    for k in done:
        log.write("cached", by_key[k])
    if drift := version_drift(cache.load_meta(by_key[k].stage.dirname).get("audit") for k in done):
        print(drift, file=sys.stderr)
    attempts: dict[str, int] = {}  # deaths charged to a stage (its own worker died)
    starts: dict[str, int] = {}
    isolate: set[str] = set()  # ended with others by a broken pool: rerun alone, to tell which one dies
    trained: list[dict[str, Any]] = []
    if not pending:
        return trained
    executor = make_executor(options, [by_key[k].cfg for k in pending])
    running: dict[str, Job] = {}
    with tqdm(total=len(by_key), initial=len(done), desc=desc, unit="stage", position=0, dynamic_ncols=True) as bar:
        try:
            while pending or running:
                raise_if_interrupted()  # one a finaliser swallowed (errors.py)
                for k in list(pending):
                    dep = by_key[k].stage.depends
                    alone_ok = not (isolate & set(running)) and (k not in isolate or not running)
                    if executor.has_room(len(running)) and alone_ok and (dep is None or dep in done
                                                                         or dep not in by_key):
                        pending.remove(k)
                        running[k] = by_key[k]
                        executor.submit(by_key[k], str(cache_root))
                        starts[k] = starts.get(k, 0) + 1
                        log.write("start", by_key[k], f"attempt={starts[k]} via={executor.name}")
                for k, result in executor.wait_any():
                    job = running.pop(k)
                    if isinstance(result, WorkerDied) and result.alongside:
                        isolate.add(k)
                        log.write("died", job, f"not counted (ended with {result.alongside} other stage(s) of the "
                                               f"pool; rerun alone) {result}")
                        tqdm.write(f"w2strust: a worker died while {job.stage.dirname} ran beside it; rerunning it "
                                   f"alone")
                        pending.insert(0, k)
                        continue
                    if isinstance(result, WorkerDied):
                        attempts[k] = attempts.get(k, 0) + 1
                        log.write("died", job, f"retry {attempts[k]} of {options.retries} {result}")
                        if attempts[k] > options.retries:
                            raise W2SError(f"{job.stage.dirname} ({job.label}): its worker died {attempts[k]} times; "
                                           f"last: {result}. Nothing half-written was kept; see {log.path}")
                        tqdm.write(f"w2strust: the worker running {job.stage.dirname} died ({result}); retrying "
                                   f"({attempts[k]}/{options.retries})")
                        pending.insert(0, k)
                        continue
                    if isinstance(result, BaseException):
                        log.write("failed", job, f"{type(result).__name__}: {result}")
                        raise result
                    done.add(k)
                    isolate.discard(k)
                    bar.update(1)
                    log.write("end", job, _describe(result))
                    if result["status"] == "trained":
                        trained.append(result)
                        tqdm.write(f"  {job.stage.dirname}: {job.label} trained in {result['seconds']:.0f}s  "
                                   + " ".join(f"{m}={v:.3f}" for m, v in result["metrics"].items()
                                              if "/" not in m and isinstance(v, (int, float))))
                    bar.set_postfix_str(f"last: {job.label}", refresh=False)
        except BaseException:  # Ctrl-C, SIGTERM, a failed stage: stop the stages in flight now, do not wait for them
            executor.close(abort=True)
            raise
        executor.close()
    return trained


def _describe(info: dict[str, Any]) -> str:
    def clock(t: float) -> str:
        return dt.datetime.fromtimestamp(t).strftime("%H:%M:%S")

    return (f"status={info['status']} seconds={info['ended'] - info['started']:.1f} started={clock(info['started'])} "
            f"ended={clock(info['ended'])} worker={info['worker']} device={info['device']}")


class StageLog:
    """A plain-text line per stage event (start, end, cached, died, failed) in the output folder."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, job: Job, detail: str = "") -> None:
        if not self.path:
            return
        now = dt.datetime.now().isoformat(timespec="seconds")
        with open(self.path, "a") as f:
            f.write(f"{now} {event:<7} {job.stage.dirname} [{job.label}] {detail}".rstrip() + "\n")


# ---------------------------------------------------------------------------------------------- executors
def make_executor(options: ExecutorOptions, cfgs: list):
    if options.executor == "ray":
        return RayExecutor(options, cfgs)
    if options.workers == 1:
        return InProcessExecutor(options, cfgs)
    return LocalPoolExecutor(options, cfgs)


def _wants_cuda(cfgs: list) -> bool:
    import torch

    return torch.cuda.is_available() and any(c.device in ("auto", "cuda") or c.device.startswith("cuda")
                                             for c in cfgs)


def unused_cluster_gpus(cluster_gpus: float, cfgs: list) -> str | None:
    """A line for a Ray cluster whose GPUs the study will not use: the stages (their device, precision and so their
    keys) are planned on the machine that starts the study, and ``device: auto`` there, without a GPU, means CPU."""
    if cluster_gpus <= 0 or _wants_cuda(cfgs) or not any(c.device == "auto" for c in cfgs):
        return None
    return (f"w2strust: the Ray cluster has {cluster_gpus:g} GPU(s), but this machine, where the stages are planned, "
            "has none: they run on the cluster's CPUs. To use the GPUs, start the study on a node that has one "
            "(with --ray-address HEAD:PORT); --device cpu silences this")


def _worker_gpus(cfgs: list) -> list[int]:
    """The GPUs local workers spread over: the ones the runs name (``--device cuda:1``: that GPU, not GPU 0 and the
    rest of the machine's), else every GPU here."""
    import torch

    named = {int(c.device.split(":")[1]) for c in cfgs if c.device.startswith("cuda:")}
    if named and not any(c.device in ("auto", "cuda") for c in cfgs):
        return sorted(named)
    return list(range(torch.cuda.device_count()))


class InProcessExecutor:
    """``--workers 1``: every stage runs here, one after another (per-stage bars below the overall one)."""
    name = "in-process"

    def __init__(self, options: ExecutorOptions, cfgs: list):
        self.threads = options.stage_threads()
        self.queue: list[Job] = []
        self.root = ""

    def has_room(self, running: int) -> bool:
        return running < 1

    def submit(self, job: Job, cache_root: str) -> None:
        self.queue.append(job)
        self.root = cache_root

    def wait_any(self) -> list[tuple[str, Any]]:
        job = self.queue.pop(0)
        try:
            return [(job.key, run_stage(job.cfg, job.stage, self.root, threads=self.threads))]
        except Exception as e:  # noqa: BLE001  (logged with the stage's name, then raised, by the scheduler)
            return [(job.key, e)]

    def close(self, abort: bool = False) -> None:
        pass


class LocalPoolExecutor:
    """``--workers N``: N spawned worker processes, each with a fixed device and cores/N threads; on GPUs,
    worker i uses GPU (i // per_gpu) modulo the GPU count (of the GPUs the runs name, where they name some). A
    worker that dies breaks the pool: the stages in flight are reported as ``WorkerDied`` and a fresh pool is
    started."""
    name = "local"

    def __init__(self, options: ExecutorOptions, cfgs: list):
        require_main_guard(options.workers)  # before any worker starts (main_guard.py says why)
        self.workers = options.workers
        if _wants_cuda(cfgs):
            gpus = _worker_gpus(cfgs)
            self.devices = [f"cuda:{gpus[(i // options.per_gpu) % len(gpus)]}" for i in range(self.workers)]
        else:
            self.devices = ["cpu"] * self.workers
        self.threads = options.stage_threads()
        self.pool: ProcessPoolExecutor | None = None
        self.futures: dict[Future, tuple[str, ProcessPoolExecutor]] = {}
        self.in_flight_at_break: dict[ProcessPoolExecutor, int] = {}

    def _pool(self) -> ProcessPoolExecutor:
        if self.pool is None:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # fork after torch started threads (or CUDA) is unsafe
            slots = ctx.Queue()
            for i in range(self.workers):
                slots.put(i)
            self.pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=init_local_worker,
                                            initargs=(slots, self.devices, self.threads))
        return self.pool

    def has_room(self, running: int) -> bool:
        return running < self.workers

    def submit(self, job: Job, cache_root: str) -> None:
        pool = self._pool()
        try:
            fut = pool.submit(run_in_local_worker, job.cfg, job.stage, cache_root)
        except BrokenProcessPool:  # a worker died while idle: start a fresh pool
            self._reset(pool)
            pool = self._pool()
            fut = pool.submit(run_in_local_worker, job.cfg, job.stage, cache_root)
        self.futures[fut] = (job.key, pool)

    def wait_any(self) -> list[tuple[str, Any]]:
        # a timeout, so that the scheduler's loop sees a Ctrl-C that a finaliser swallowed within a second
        finished, _ = wait(list(self.futures), timeout=1.0, return_when=FIRST_COMPLETED)
        out: list[tuple[str, Any]] = []
        for fut in finished:
            key, pool = self.futures.pop(fut)
            try:
                out.append((key, fut.result()))
            except BrokenProcessPool:
                # the pool terminates every worker when one dies: each stage in flight ends up here, and which one's
                # worker died is not known; counted once per pool, when its first stage arrives here
                if pool not in self.in_flight_at_break:
                    self.in_flight_at_break[pool] = 1 + sum(p is pool for _, p in self.futures.values())
                out.append((key, WorkerDied("a worker process ended unexpectedly (killed, or out of memory)",
                                            alongside=self.in_flight_at_break[pool] - 1)))
                self._reset(pool)
            except Exception as e:  # noqa: BLE001
                out.append((key, e))
        return out

    def _reset(self, pool: ProcessPoolExecutor) -> None:
        if pool is self.pool:
            pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def close(self, abort: bool = False) -> None:
        """Shut the pool down; ``abort``: terminate the workers at once (their stages' temp folders are removed
        by the next run, StageCache.clean_stale) instead of waiting minutes for the stages in flight."""
        if self.pool is not None:
            if abort:
                for proc in list(getattr(self.pool, "_processes", {}).values()):  # no public API before 3.14
                    proc.terminate()
            self.pool.shutdown(wait=not abort, cancel_futures=True)
            self.pool = None


class RayExecutor:
    """``--executor ray``: each stage is a Ray task with its CPU/GPU needs; Ray retries a task whose worker
    died (``max_retries``), and so does the scheduler once more if Ray gives up."""
    name = "ray"

    def __init__(self, options: ExecutorOptions, cfgs: list):
        try:
            import ray
        except ImportError:
            raise W2SError("--executor ray needs Ray: pip install -e '.[ray]'") from None
        self.ray = ray
        connect(ray, options.ray_address, options.ray_timeout, options.ray_logs)
        self.cap = options.workers if options.workers > 1 else 0
        self.threads = options.stage_threads()
        gpus = ray.cluster_resources().get("GPU", 0)
        # as the plan resolved the device, here (its key depends on it): a head without a GPU plans CPU stages
        wants_gpu = gpus > 0 and _wants_cuda(cfgs)
        if note := unused_cluster_gpus(gpus, cfgs):
            print(note, file=sys.stderr)
        self.device = "cuda" if wants_gpu else "cpu"
        self.task = ray.remote(run_in_ray_task).options(
            num_cpus=self.threads, num_gpus=(1.0 / options.per_gpu) if wants_gpu else 0,
            max_retries=options.retries, retry_exceptions=False,
            runtime_env={"env_vars": {"TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false"}})
        self.refs: dict[Any, str] = {}

    def has_room(self, running: int) -> bool:
        return not self.cap or running < self.cap

    def submit(self, job: Job, cache_root: str) -> None:
        ref = self.task.remote(job.cfg, job.stage, str(Path(cache_root).resolve()), self.device, self.threads)
        self.refs[ref] = job.key

    def wait_any(self) -> list[tuple[str, Any]]:
        ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=1.0)  # as LocalPoolExecutor.wait_any
        out: list[tuple[str, Any]] = []
        for ref in ready:
            key = self.refs.pop(ref)
            try:
                out.append((key, self.ray.get(ref)))
            except self.ray.exceptions.RayTaskError as e:  # the stage itself raised
                cause = e.cause if isinstance(e.cause, BaseException) else e
                out.append((key, cause))
            except self.ray.exceptions.RayError as e:  # worker or node died after Ray's own retries
                out.append((key, WorkerDied(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")))
        return out

    def close(self, abort: bool = False) -> None:
        for ref in self.refs:
            self.ray.cancel(ref, force=True)
        self.refs.clear()
