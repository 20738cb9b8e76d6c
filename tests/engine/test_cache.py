"""The stage cache: verification before use, the per-stage lock, stale temp folders of dead processes."""

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from w2strust.config.build import build_config
from w2strust.engine.cache import StageCache
from w2strust.engine.run_stage import required_files, run_stage
from w2strust.experiment.plan import plan

TINY = {"data": {"n_weak": 48, "n_wts": 48, "n_test": 64}, "weak_train": {"epochs": 1},
        "strong_train": {"epochs": 1}, "strategies": ["no_tft"]}


def _write_stage(cache: StageCache, name: str = "weak-0123456789abcdef") -> str:
    def write(tmp):
        np.savez_compressed(tmp / "preds.npz", prob=np.full((4, 2), 0.5, dtype=np.float32))
        np.save(tmp / "weak_labels.npy", np.eye(2, dtype=np.float32))

    with cache.claim(name):
        cache.commit(name, {"metrics": {"task_accuracy": 0.5}}, write)
    return name


def test_commit_writes_a_manifest_and_verification_names_the_damaged_file(tmp_path):
    cache = StageCache(tmp_path)
    name = _write_stage(cache)
    meta = json.loads((tmp_path / name / "meta.json").read_text())
    assert set(meta["files"]) == {"preds.npz", "weak_labels.npy"}
    assert StageCache(tmp_path).problem(name, ("preds.npz", "weak_labels.npy")) is None
    assert StageCache(tmp_path).problem("weak-ffffffffffffffff") == "missing"

    preds = tmp_path / name / "preds.npz"
    data = preds.read_bytes()
    preds.write_bytes(data[: len(data) // 2])  # truncated
    problem = StageCache(tmp_path).problem(name)
    assert str(preds) in problem and "truncated" in problem and "\n" not in problem
    preds.write_bytes(bytes(len(data)))  # same size, garbage
    assert "sha256" in StageCache(tmp_path).problem(name)
    (tmp_path / name / "meta.json").write_text("{not json")
    assert "meta.json is not valid JSON" in StageCache(tmp_path).problem(name)


def _hold_lock(root, name, ready):
    lock = StageCache(root).lock(name)
    lock.acquire()  # held until this process dies (the object must stay alive)
    (root / f".{name}-vm-{os.getpid()}-abc123").mkdir()  # a half-written stage
    ready.set()
    time.sleep(600)


def test_lock_of_a_killed_holder_is_taken_over_and_its_temp_folder_removed(tmp_path):
    name = "wts-0123456789abcdef"
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, name, ready))
    holder.start()
    try:
        assert ready.wait(120)
        cache = StageCache(tmp_path)
        assert cache.clean_stale() == []  # its writer is alive: left alone
        with pytest.raises(Exception, match="(?i)timeout|could not be acquired"):
            cache.lock(name).acquire(timeout=0.2)
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
        waited = []
        with cache.claim(name, wait=lambda: waited.append(1)):
            assert not list(tmp_path.glob(f".{name}-*"))  # the dead writer's temp folder is gone
        assert waited == []  # the OS released the dead holder's lock: no wait
    finally:
        if holder.is_alive():
            holder.kill()


def test_clean_stale_removes_temp_folders_of_dead_processes(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".ceiling-0123456789abcdef-vm-{dead.pid}-xyz"
    stale.mkdir(parents=True)
    (stale / "preds.npz").write_bytes(b"half")
    assert StageCache(tmp_path).clean_stale() == [stale]
    assert not stale.exists()
    assert f"process {dead.pid} on vm" in capsys.readouterr().out


def _run_one(cfg, stage, root, q):
    q.put(run_stage(cfg, stage, root, threads=1)["status"])


@pytest.mark.slow
def test_two_processes_on_one_cache_train_a_stage_once(tmp_path):
    cfg = build_config("fairness", "smoke", overrides=TINY)
    weak = plan(cfg)[0][0]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_run_one, args=(cfg, weak, str(tmp_path), q)) for _ in range(2)]
    for p in procs:
        p.start()
    statuses = sorted(q.get(timeout=300) for _ in procs)
    for p in procs:
        p.join()
    assert statuses == ["cached", "trained"]
    assert StageCache(tmp_path).problem(weak.dirname, required_files("classification", "weak")) is None


def test_a_damaged_artefact_is_reported_in_one_line_and_retrained(tmp_path, capsys):
    cfg = build_config("fairness", "smoke", overrides=TINY)
    weak = plan(cfg)[0][0]
    assert run_stage(cfg, weak, str(tmp_path))["status"] == "trained"
    first = np.load(tmp_path / weak.dirname / "weak_labels.npy")
    (tmp_path / weak.dirname / "weak_labels.npy").write_bytes(b"garbage")
    capsys.readouterr()
    assert run_stage(cfg, weak, str(tmp_path))["status"] == "trained"
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "damaged artefact" in ln]
    assert len(lines) == 1 and str(tmp_path / weak.dirname / "weak_labels.npy") in lines[0]
    np.testing.assert_array_equal(np.load(tmp_path / weak.dirname / "weak_labels.npy"), first)  # same seed, same
    assert run_stage(cfg, weak, str(tmp_path))["status"] == "cached"


def test_a_weak_stage_records_the_entropy_of_its_soft_labels(tmp_path):
    """The validity gates name near-chance weak labels (a floor for the students' loss) from these two numbers."""
    cfg = build_config("fairness", "smoke", overrides=TINY)
    weak = plan(cfg)[0][0]
    run_stage(cfg, weak, str(tmp_path))
    labels = np.clip(np.load(tmp_path / weak.dirname / "weak_labels.npy").astype(np.float64), 1e-12, 1.0)
    meta = StageCache(tmp_path).load_meta(weak.dirname)
    assert meta["weak_label_entropy"] == pytest.approx(-(labels * np.log(labels)).sum(-1).mean())
    assert meta["weak_label_max_entropy"] == pytest.approx(np.log(2))


def test_atomically_written_files_get_the_umask_mode_like_every_other_file(tmp_path):
    """mkstemp makes its file 0600; renamed into place, meta.json, results.jsonl, summary.json, config.yaml and
    report.md stayed private while preds.npz and the figures beside them were readable: a cache shared by a group
    (the folder itself is made readable on purpose) then had stages whose meta.json the others cannot read."""
    from w2strust import io

    old = os.umask(0o022)
    io._umask.cache_clear()  # the mask is read once per process
    try:
        cache = StageCache(tmp_path / "cache")
        folder = cache.commit("weak-0123456789abcdef", {"metrics": {}},
                              lambda tmp: np.save(tmp / "weak_labels.npy", np.zeros(2)))
    finally:
        os.umask(old)
        io._umask.cache_clear()
    assert (folder / "meta.json").stat().st_mode & 0o777 == 0o644
    assert (folder / "weak_labels.npy").stat().st_mode & 0o777 == 0o644


def test_a_data_file_replaced_between_two_runs_of_one_process_is_read_again(tmp_path):
    """A notebook: run, replace a data file, run again. The new fingerprint gives new stage keys, but the splits kept in
    memory were keyed by the data folder's path only, so the new stages trained and scored on the old file (stored
    under the new file's key)."""
    import shutil

    from w2strust.engine.run_stage import load_splits
    from w2strust.properties import get

    data = tmp_path / "data"
    shutil.copytree(os.environ["W2STRUST_DATA"] + "/adult", data / "adult")
    cfg = build_config("fairness", "smoke", overrides={"data": {"data_dir": str(data)}})
    prop = get("fairness")
    (stage,) = [s for s in plan(cfg)[0] if s.kind == "weak"][:1]
    before = load_splits(cfg, prop, 0, stage.spec["data_files"])
    test = data / "adult" / "adult.test"
    lines = test.read_text().splitlines(keepends=True)
    test.write_text("".join(lines[:1] + lines[1:][::-1]))  # same rows, another order: another D_T sample
    (stage,) = [s for s in plan(cfg)[0] if s.kind == "weak"][:1]
    after = load_splits(cfg, prop, 0, stage.spec["data_files"])
    assert list(before.test["text"]) != list(after.test["text"])
