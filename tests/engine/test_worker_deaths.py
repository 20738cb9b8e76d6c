"""A local worker that dies ends every stage of its pool: only the stage whose own worker dies is charged a retry
(engine/scheduler.py). The executor here is a stand-in with the pool's semantics; no model trains."""

import time

import pytest

from w2strust.engine import scheduler
from w2strust.engine.scheduler import ExecutorOptions, Job, WorkerDied, run_jobs
from w2strust.engine.stage import Stage
from w2strust.errors import W2SError


class PoolLike:
    """Two slots. While a stage in ``kills`` runs (and its kills last), its worker dies, which breaks the pool:
    every stage in flight ends with WorkerDied, as ProcessPoolExecutor does; otherwise stages finish in order."""
    name = "pool-like"

    def __init__(self, kills: dict[str, int]):
        self.kills, self.running, self.together = kills, [], []

    def has_room(self, running: int) -> bool:
        return running < 2

    def submit(self, job: Job, cache_root: str) -> None:
        self.running.append(job)
        self.together.append({j.stage.kind for j in self.running})

    def wait_any(self):
        killer = next((j for j in self.running if self.kills.get(j.stage.kind, 0) > 0), None)
        if killer is not None:
            self.kills[killer.stage.kind] -= 1
            ended, self.running = self.running, []
            return [(j.key, WorkerDied("a worker process ended unexpectedly", alongside=len(ended) - 1))
                    for j in ended]
        job = self.running.pop(0)
        now = time.time()
        return [(job.key, {"status": "cached", "started": now, "ended": now, "worker": "w", "device": "cpu"})]

    def close(self, abort: bool = False) -> None:
        pass


def _jobs():
    return [Job(Stage(kind, 0, {"model": "m", "lambda": 0.0}), None, kind) for kind in ("weak", "ceiling")]


def _run(monkeypatch, tmp_path, kills: dict[str, int], retries: int):
    pool = PoolLike(kills)
    monkeypatch.setattr(scheduler, "make_executor", lambda options, cfgs: pool)
    options = ExecutorOptions(workers=2, retries=retries)
    run_jobs(_jobs(), tmp_path / "cache", options, log_path=tmp_path / "stages.log")
    return pool


def test_stages_ended_by_another_s_death_are_rerun_alone_and_not_charged(monkeypatch, tmp_path):
    # one death while both ran: with no retries allowed, the run still ends, as neither stage is known to be the cause
    pool = _run(monkeypatch, tmp_path, {"weak": 1}, retries=0)
    assert pool.together[1] == {"weak", "ceiling"}  # the second submission ran beside the first
    assert all(len(t) == 1 for t in pool.together[2:])  # after the break, one stage at a time
    log = (tmp_path / "stages.log").read_text()
    assert log.count("not counted (ended with 1 other stage(s)") == 2 and " retry " not in log


def test_the_retry_limit_names_the_stage_whose_worker_dies(monkeypatch, tmp_path):
    with pytest.raises(W2SError, match=r"weak-\w+ \(weak\): its worker died 3 times"):
        _run(monkeypatch, tmp_path, {"weak": 10}, retries=2)
    log = (tmp_path / "stages.log").read_text().splitlines()
    ceiling_deaths = [ln for ln in log if " died " in ln and "[ceiling]" in ln]
    assert ceiling_deaths and all("not counted" in ln for ln in ceiling_deaths)


def test_local_workers_use_the_gpu_the_runs_name(monkeypatch):
    """`--device cuda:1 --workers 4` puts every worker on GPU 1 (it put them on GPUs 0, 1, 2, 3 of a 4-GPU machine,
    beside whatever else was using them); `auto` / `cuda` spread over every GPU."""
    import types

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    options = ExecutorOptions(workers=4, per_gpu=2)
    run = types.SimpleNamespace
    assert scheduler.LocalPoolExecutor(options, [run(device="cuda:1")]).devices == ["cuda:1"] * 4
    assert scheduler.LocalPoolExecutor(options, [run(device="cuda:3"), run(device="cuda:1")]).devices == \
        ["cuda:1", "cuda:1", "cuda:3", "cuda:3"]
    assert scheduler.LocalPoolExecutor(options, [run(device="auto")]).devices == \
        ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    assert scheduler.LocalPoolExecutor(options, [run(device="cpu")]).devices == ["cpu"] * 4
