"""Study files, the stage scheduler with its executors (local worker processes, Ray), a killed worker."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from w2strust.cli import main
from w2strust.errors import W2SError
from w2strust.experiment.study import load_study, study_jobs, study_metrics

TINY = {"preset": "smoke", "seeds": [0], "strategies": ["no_tft", "weak_wts_tft"],
        "data": {"n_weak": 48, "n_wts": 48, "n_test": 64}, "weak_train": {"epochs": 1}, "strong_train": {"epochs": 1}}


def _study(tmp_path: Path, **keys) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"properties": ["fairness"], **TINY, **keys}, sort_keys=False))
    return path


def test_study_file_sweeps_lists_and_names_run_folders(tmp_path):
    path = _study(tmp_path, properties=["fairness", "adversarial"], lambda_wts=[0.5, 2.0], alpha_max=[0.1, 0.25],
                  weak_train={"epochs": 1, "lr": [0.001, 0.002]},
                  per_property={"adversarial": {"lambda_wts": [0.3]}})
    _, runs = load_study(path)
    dirs = [r.dir for r in runs]
    assert len([d for d in dirs if d.startswith("fairness/")]) == 8  # 2 λ_WTS x 2 α x 2 lr
    assert "fairness/weak_train.lr=0.001__lambda_wts=0.5__alpha_max=0.1" in dirs  # in the file's order
    assert "adversarial/weak_train.lr=0.001__alpha_max=0.1" in dirs  # one λ_WTS value: not in the name
    run = next(r for r in runs if r.dir == "fairness/weak_train.lr=0.002__lambda_wts=2__alpha_max=0.25")
    assert (run.cfg.lambda_wts, run.cfg.alpha_max, run.cfg.weak_train.lr) == (2.0, 0.25, 0.002)
    assert run.cfg.seeds == [0] and run.cfg.strategies == ["no_tft", "weak_wts_tft"]  # lists, not swept
    assert run.point == {"weak_train.lr": 0.002, "lambda_wts": 2.0, "alpha_max": 0.25}
    jobs, _ = study_jobs(runs)
    assert len(jobs) == len({j.key for j in jobs})  # one graph, deduplicated
    # the weak models do not depend on λ_WTS or α: 2 per lr (λ_W = 0 and λ_W > 0) per property
    assert len([j for j in jobs if j.stage.kind == "weak"]) == 2 * 2 * 2


def test_separate_sweeps_and_cli_overrides(tmp_path):
    path = _study(tmp_path, sweeps=[{"lambda_wts": [1.0, 3.0]}, {"alpha_max": [0.0, 0.5]}])
    _, runs = load_study(path, cli_overrides={"seeds": "3"})
    assert sorted(r.dir for r in runs) == ["fairness/alpha_max=0", "fairness/alpha_max=0.5",
                                           "fairness/lambda_wts=1", "fairness/lambda_wts=3"]
    assert all(r.cfg.seeds == [3] for r in runs)
    _, runs = load_study(None, properties="fairness,ood", preset="smoke")
    assert [r.dir for r in runs] == ["fairness", "ood"]


def test_single_values_in_a_sweeps_grid_are_applied_and_checked(tmp_path):
    """A scalar next to a list in one grid of `sweeps` is part of that grid's points (it was dropped), and a misspelt
    key there is an error like anywhere else (it was ignored)."""
    path = _study(tmp_path, sweeps=[{"lambda_wts": [1.0, 3.0], "alpha_max": 0.1}, {"alpha_max": [0.5]}])
    _, runs = load_study(path)
    got = {r.dir: (r.cfg.lambda_wts, r.cfg.alpha_max) for r in runs}
    assert got["fairness/lambda_wts=1__alpha_max=0.1"] == (1.0, 0.1)
    assert got["fairness/lambda_wts=3__alpha_max=0.1"] == (3.0, 0.1)
    assert [v[1] for k, v in got.items() if "lambda_wts" not in k] == [0.5]
    with pytest.raises(W2SError, match="lamda_wts"):
        load_study(_study(tmp_path, sweeps=[{"lambda_wts": [1.0, 3.0]}, {"lamda_wts": 5}]))


@pytest.mark.parametrize("cli", [{"lambda_wts": 2}, {"weak_model": "tiny-bert-wide"}])
def test_a_cli_override_of_a_swept_key_is_an_error_not_a_mislabelled_folder(tmp_path, cli):
    path = _study(tmp_path, lambda_wts=[0.5, 2.0], models=[{"weak": "tiny-bert", "strong": "tiny-bert-wide"},
                                                           {"weak": "tiny-bert", "strong": "tiny-bert"}])
    with pytest.raises(W2SError, match="swept values of (lambda_wts|models)"):
        load_study(path, cli_overrides=cli)
    _, runs = load_study(path, cli_overrides={"alpha_max": 0.5})  # a key the study does not sweep is fine
    assert {r.cfg.alpha_max for r in runs} == {0.5}


@pytest.mark.parametrize("keys, message", [
    ({"lambda_wts": []}, "empty list"),
    ({"per_property": {"privacy": {"lambda_wts": 1}}}, "per_property"),
    ({"models": [{"weak": "tiny-bert"}]}, "model"),
    ({"alpha_max": [0.1, 7]}, "alpha_max must be in [0, 1]"),
])
def test_bad_study_files_give_one_clear_error(tmp_path, keys, message):
    with pytest.raises(W2SError, match="(?i)" + message.replace("[", r"\[").replace("]", r"\]")):
        load_study(_study(tmp_path, **keys))


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """A 9-stage study (two λ_WTS points) run by two local worker processes of one thread each."""
    tmp = tmp_path_factory.mktemp("study")
    path = _study(tmp, lambda_wts=[0.5, 2.0])
    out = tmp / "w2"
    assert main(["study", str(path), "--workers", "2", "--threads", "1", "--out", str(out)]) == 0
    return path, out


def test_local_workers_write_run_folders_index_table_and_stage_log(two_workers):
    _, out = two_workers
    index = json.loads((out / "study.json").read_text())
    assert [r["dir"] for r in index["runs"]] == ["fairness/lambda_wts=0.5", "fairness/lambda_wts=2"]
    assert index["swept"] == {"fairness": {"lambda_wts": [0.5, 2.0]}}
    assert index["stages"] == {"total": 9, "trained_now": 9}
    for run in index["runs"]:
        folder = out / run["dir"]
        for f in ("config.yaml", "results.jsonl", "summary.json", "report.md", "figure2.png"):
            assert (folder / f).exists(), f
        assert (folder / "cache").resolve() == (out / "cache").resolve()
    assert "fairness/lambda_wts=0.5" in (out / "table1.md").read_text()
    log = (out / "stages.log").read_text().splitlines()
    ends = [ln for ln in log if " end " in ln]
    assert len(ends) == 9 and all("seconds=" in ln and "worker=" in ln and "device=cpu" in ln for ln in ends)
    assert len({ln.split("worker=")[1].split()[0] for ln in ends}) == 2  # two worker processes did the work


def test_rerun_trains_nothing_and_dry_run_counts_cached(two_workers, capsys):
    path, out = two_workers
    # one process with the workers' thread count: the same stages (a CPU stage's key holds its threads, not workers)
    assert main(["study", str(path), "--out", str(out), "--dry-run", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "9 unique stage(s): 9 cached, 0 to train" in text and "nothing left" in text
    before = study_metrics(out)
    assert main(["study", str(path), "--out", str(out), "--threads", "1"]) == 0
    assert "0 stage(s) trained" in capsys.readouterr().out
    assert study_metrics(out) == before
    # another thread count rounds PyTorch's CPU reductions differently: other stages, none of them cached
    assert main(["study", str(path), "--out", str(out), "--dry-run", "--threads", "2"]) == 0
    assert "9 unique stage(s): 0 cached, 9 to train" in capsys.readouterr().out
    # a new sweep point: only its two WTS models are new, and the dry run estimates them from recorded times
    wider = path.with_name("wider.yaml")
    wider.write_text(path.read_text().replace("- 2.0", "- 2.0\n- 4.0"))
    assert main(["study", str(wider), "--out", str(out), "--dry-run", "--workers", "2", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "9 cached, 2 to train" in text and "with 2 worker(s)" in text


def test_ray_executor_gives_the_same_metrics(two_workers, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")
    path, reference = two_workers
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        # the two no_tft sweep points share all four of their stages (kept small: CI has two cores)
        assert main(["study", str(path), "--executor", "ray", "--strategies", "no_tft",
                     "--out", str(tmp_path / "ray")]) == 0
    finally:
        ray.shutdown()
    got, want = study_metrics(tmp_path / "ray"), study_metrics(reference)
    assert len(got) == 8 and got == {k: want[k] for k in got}
    ends = [ln for ln in (tmp_path / "ray" / "stages.log").read_text().splitlines() if " end " in ln]
    assert len(ends) == 4 and all("worker=" in ln for ln in ends)


@pytest.mark.slow
def test_a_worker_killed_mid_stage_is_retried_and_leaves_nothing_half_written(two_workers, tmp_path):
    import psutil

    path, reference = two_workers
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "w2strust.cli", "study", str(path), "--workers", "2",
                             "--strategies", "no_tft", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.time() + 300
    while victim is None and time.time() < deadline and proc.poll() is None:
        # a stage is being trained once its lock file exists; kill the worker process that holds it
        if list((out / "cache" / ".locks").glob("*.lock")):
            workers = [c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]
            if workers:
                victim = workers[0]
                victim.kill()
        time.sleep(0.1)
    _, err = proc.communicate(timeout=600)
    assert victim is not None and proc.returncode == 0, err[-2000:]
    log = (out / "stages.log").read_text()
    assert " died " in log and "attempt=2" in log
    assert not [p for p in (out / "cache").iterdir() if p.name.startswith(".") and p.name != ".locks"]
    got, want = study_metrics(out), study_metrics(reference)
    assert len(got) == 8 and got == {k: want[k] for k in got}  # the retried stages give the same numbers


def test_a_missing_tracker_package_stops_a_study_before_it_trains(tmp_path, monkeypatch):
    """`w2strust run` and `sweep` check --log's package before training; a study opened its trackers only when it
    wrote the run folders, after every stage had trained (hours), and then stopped on the missing package."""
    from w2strust import api
    from w2strust.experiment import study

    def trained(*a, **k):
        raise AssertionError("the study trained before checking --log")

    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    monkeypatch.setattr(study, "run_jobs", trained)
    with pytest.raises(W2SError, match="--log wandb needs the wandb package"):
        api.study({"properties": ["fairness"], "preset": "smoke"}, log="wandb", out=tmp_path / "s")


def test_swept_values_shown_alike_are_an_error_not_one_merged_folder():
    """Folder names show a float to 6 significant digits: 0.1234567 and 0.1234568 got one folder, and the study
    silently kept only the first run. Two grids that hold the same point still share its folder."""
    spec = {"properties": ["fairness"], "preset": "smoke", "lambda_wts": [0.1234567, 0.1234568]}
    with pytest.raises(W2SError, match="one folder, fairness"):
        load_study(spec)
    _, runs = load_study({"properties": ["fairness"], "preset": "smoke",
                          "sweeps": [{"lambda_wts": [1.0, 3.0]}, {"lambda_wts": [3.0, 10.0]}]})
    assert [r.dir for r in runs] == ["fairness/lambda_wts=1", "fairness/lambda_wts=3", "fairness/lambda_wts=10"]


def test_a_failed_study_still_writes_the_runs_whose_stages_all_finished(tmp_path, monkeypatch, capsys):
    """A study that stops at one stage (an error, Ctrl-C) wrote no run folder at all, finished runs included; their
    stages were cached, but their results, reports and saved models waited for a rerun."""
    from w2strust import api
    from w2strust.experiment import study

    cache = tmp_path / "cache"
    api.study({"properties": ["fairness"], **TINY, "lambda_wts": [1.0]}, out=tmp_path / "first", cache=cache)

    def stops(*a, **k):
        raise W2SError("stage wts-... failed")

    monkeypatch.setattr(study, "run_jobs", stops)
    out = tmp_path / "s"
    with pytest.raises(W2SError, match="failed"):
        api.study({"properties": ["fairness"], **TINY, "lambda_wts": [1.0, 3.0]}, out=out, cache=cache)
    assert (out / "fairness" / "lambda_wts=1" / "results.jsonl").exists()  # all its stages are cached
    assert not (out / "fairness" / "lambda_wts=3").exists()  # its WTS stages at λ_WTS = 3 never trained
    assert "wrote the 1 of 2 run folder(s)" in capsys.readouterr().err


def test_a_cache_filled_at_another_thread_count_is_pointed_out(tmp_path):
    """A CPU stage's key holds its thread count: the published study ran with --threads 1, and the same study file
    without it planned every stage again (2 h) without a word about the 45 cached ones."""
    from w2strust import api
    from w2strust.experiment.plan import other_threads_hint

    cache = tmp_path / "cache"
    over = {k: v for k, v in TINY.items() if k != "preset"}
    api.run("fairness", "smoke", overrides=over, out=tmp_path / "r", cache=cache, threads=1)
    cfg = api.configure("fairness", "smoke", overrides=over)
    hint = other_threads_hint([cfg], cache, 2)
    assert hint and "trained with --threads 1" in hint and "add --threads 1" in hint
    assert other_threads_hint([cfg], cache, 1) is None
    text = api.study({"properties": ["fairness"], **TINY}, out=tmp_path / "s", cache=cache, threads=2, dry_run=True)
    assert "add --threads 1" in text.splitlines()[-1]


def test_a_stage_planned_by_several_runs_keeps_what_any_of_them_needs():
    # two points of a study that differ only in save_models plan the same stages (the key leaves it out): the one
    # job per stage must keep the weights, or the save_models run links models/ to folders that do not exist
    _, runs = load_study({"properties": ["fairness"], "preset": "smoke", "seeds": [0], "strategies": ["no_tft"],
                          "sweeps": [{"save_models": [False, True]}]})
    assert [r.cfg.save_models for r in runs] == [False, True]
    jobs, _ = study_jobs(runs)
    assert len(jobs) == 4 and all("model/config.json" in j.needs and j.cfg.save_models for j in jobs)

