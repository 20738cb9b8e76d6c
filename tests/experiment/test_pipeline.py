import json
import shutil
import subprocess
import sys
import time

import pytest

from w2strust.cli import main
from w2strust.config.build import build_config
from w2strust.config.schema import ROLES, STRATEGIES
from w2strust.experiment.plan import Runner, plan


@pytest.fixture(scope="module")
def fair_run(smoke_run, tmp_path_factory):
    # a copy: test_report_command_rebuilds_from_results rewrites the report files
    out = tmp_path_factory.mktemp("fair") / "run"
    shutil.copytree(smoke_run("fairness"), out)
    return out


def test_smoke_run_writes_results_summary_report(fair_run):
    records = [json.loads(line) for line in (fair_run / "results.jsonl").read_text().splitlines()]
    assert len(records) == len(STRATEGIES) * len(ROLES)
    for r in records:
        for key in ("property", "strategy", "role", "seed", "weak_model", "strong_model", "lambda_weak",
                    "lambda_wts", "alpha_max"):
            assert key in r
        for m in ("task_accuracy", "dpd", "eo_tpr_gap"):
            assert 0.0 <= r["metrics"][m] <= 1.0
    by = {(r["strategy"], r["role"]): r for r in records}
    assert by[("no_tft", "weak")]["lambda_weak"] == 0 and by[("weak_tft", "weak")]["lambda_weak"] > 0
    assert by[("weak_tft", "wts_naive")]["lambda_wts"] == 0 and by[("weak_wts_tft", "wts_aux")]["lambda_wts"] > 0
    assert by[("no_tft", "wts_aux")]["alpha_max"] > 0 and by[("no_tft", "wts_naive")]["alpha_max"] == 0
    summary = json.loads((fair_run / "summary.json").read_text())
    assert summary["metrics"]["no_tft"]["weak"]["dpd"]["n"] == 1
    for s in STRATEGIES:
        t = summary["wts_trust"][s]
        assert isinstance(t["holds"], bool) and "test" in t and len(t["comparisons"]) == 4
    report = (fair_run / "report.md").read_text()
    assert "Weak+WTS TFT" in report and "figure2.png" in report
    assert (fair_run / "figure2.png").read_bytes()[:4] == b"\x89PNG"
    assert (fair_run / "config.yaml").exists()


def test_shared_stages_are_trained_once():
    cfg = build_config("fairness", "smoke")
    stages, records = plan(cfg)
    # weak λ=0, weak λ_W (shared by weak_tft and weak_wts_tft), one ceiling, 3 x 2 WTS models
    assert sorted(s.kind for s in stages) == ["ceiling", "weak", "weak"] + ["wts"] * 6
    arts = {(r["strategy"], r["role"]): r["artefact"] for r in records}
    assert arts[("weak_tft", "weak")] == arts[("weak_wts_tft", "weak")] != arts[("no_tft", "weak")]
    assert len({arts[(s, "strong_ceiling")] for s in STRATEGIES}) == 1


def test_second_run_trains_nothing_and_a_lost_stage_is_retrained(fair_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(fair_run, out)
    cfg = build_config("fairness", "smoke")
    runner = Runner(cfg, out)
    first = (out / "results.jsonl").read_text()
    runner.run()
    assert runner.trained == []
    assert (out / "results.jsonl").read_text() == first
    # A killed run leaves at most a hidden temp folder: it is ignored, and a missing stage is retrained.
    victim = sorted((out / "cache").glob("wts-*"))[0]
    shutil.rmtree(victim)
    (out / "cache" / f".{victim.name}-partial").mkdir()
    runner = Runner(cfg, out)
    runner.run()
    assert runner.trained == [victim.name]


def test_new_results_leave_no_summary_of_the_old_ones_beside_them(fair_run, tmp_path):
    # a rerun with other settings (all cached) that is stopped after results.jsonl, before its report is written:
    # the old summary (three strategies' verdicts, gates) must not be read beside the new one-strategy results
    out = tmp_path / "copy"
    shutil.copytree(fair_run, out)
    assert all((out / f).exists() for f in ("summary.json", "report.md", "figure2.png"))
    Runner(build_config("fairness", "smoke", overrides={"strategies": ["no_tft"]}), out).run()
    assert {json.loads(line)["strategy"] for line in (out / "results.jsonl").read_text().splitlines()} == {"no_tft"}
    assert not any((out / f).exists() for f in ("summary.json", "report.md", "figure2.png"))
    assert main(["report", str(out)]) == 0  # `w2strust report` writes them again, from these results
    assert list(json.loads((out / "summary.json").read_text())["wts_trust"]) == ["no_tft"]


@pytest.mark.slow
def test_changing_a_wts_setting_reuses_weak_and_ceiling(fair_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(fair_run, out)
    cfg = build_config("fairness", "smoke", overrides={"alpha_max": 0.1})
    runner = Runner(cfg, out)
    runner.run()
    assert sorted(runner.trained) == sorted({d for d in runner.trained if d.startswith("wts-")})
    assert len(runner.trained) == 3  # only the three WTS-Aux models depend on α


def test_report_command_rebuilds_from_results(fair_run, capsys):
    (fair_run / "summary.json").unlink()
    assert main(["report", str(fair_run)]) == 0
    assert (fair_run / "summary.json").exists()
    assert "WTS trust" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["run", "fairness", "--preset", "smoke", "--set", "weak_trian.lr=1e-3"], "did you mean 'weak_train'"),
    (["run", "fairness", "--preset", "smoke", "--set", "weak_model=gpt-17"], "unknown model 'gpt-17'"),
    (["run", "fairness", "--preset", "smoke", "--data-dir", "/nonexistent/data"],
     "data folder /nonexistent/data does not exist"),
    (["run", "fairness", "--preset", "smoke", "--set", "lambda_weak=abc"], "expects a number"),
    (["run", "fairness", "--preset", "turbo"], "unknown preset 'turbo'"),
    (["run", "fairnes", "--preset", "smoke"], "unknown property 'fairnes'"),
    (["run", "fairness", "--preset", "smoke", "--strategies", "all_tft"], "unknown strategy"),
])
def test_bad_input_gives_a_clear_error(argv, message, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message.lower() in err.lower()
    assert "Traceback" not in err


def test_data_folder_missing_a_file(tmp_path, capsys):
    (tmp_path / "adult").mkdir()
    argv = ["run", "fairness", "--preset", "smoke", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "adult/adult.data" in capsys.readouterr().err


def test_yaml_config_and_overrides_are_applied_and_saved(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("seeds: [1, 2]\nweak_train:\n  lr: 0.003\nlambda_wts: 0.5\n")
    cfg = build_config("fairness", "smoke", str(y), {"lambda_wts": 0.7})
    assert cfg.seeds == [1, 2] and cfg.weak_train.lr == 0.003 and cfg.lambda_wts == 0.7
    assert cfg.strong_model == "tiny-bert-wide"  # from the preset


@pytest.mark.slow
def test_killed_process_resumes_without_retraining(tmp_path):
    """SIGKILL a real run after its first finished stage; the rerun trains only what was missing."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "w2strust.cli", "run", "fairness", "--preset", "smoke", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while not list((out / "cache").glob("*/meta.json")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    finished = {p.parent.name for p in (out / "cache").glob("*/meta.json")}
    visible = {p.name for p in (out / "cache").iterdir() if not p.name.startswith(".")}
    assert visible == finished  # no stage folder without its meta.json: nothing half-written is visible
    assert 1 <= len(finished) < 9
    runner = Runner(build_config("fairness", "smoke"), out)
    runner.run()
    assert not finished & set(runner.trained)
    assert len(runner.trained) == 9 - len(finished)


def test_study_writes_table1_reusing_a_shared_cache(fair_run, tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["study", "--properties", "fairness", "--preset", "smoke", "--out", str(out), "--cache",
            str(fair_run / "cache")]
    assert main(argv) == 0
    table = (out / "table1.md").read_text()
    assert "| strategy | fairness |" in table and "Weak+WTS TFT" in table
    assert (out / "fairness" / "results.jsonl").read_text() == (fair_run / "results.jsonl").read_text()


def test_data_command_prints_sizes_not_text(capsys):
    assert main(["data", "fairness", "--preset", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "D_W" in out and "160 rows" in out and "D_T" in out
    assert "workclass" not in out


def _rerecord(stage_dir, name: str) -> None:
    """Record a deliberately replaced artefact file in its stage's manifest (as if the stage had written it)."""
    from w2strust.io import sha256

    meta = json.loads((stage_dir / "meta.json").read_text())
    meta["files"][name] = {"size": (stage_dir / name).stat().st_size, "sha256": sha256(stage_dir / name)}
    (stage_dir / "meta.json").write_text(json.dumps(meta))


def test_report_flags_a_collapsed_model(fair_run, tmp_path):
    import numpy as np

    from w2strust.report.run_report import write_report

    out = tmp_path / "copy"
    shutil.copytree(fair_run, out)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    victim = next(r for r in records if r["strategy"] == "weak_wts_tft" and r["role"] == "wts_aux")
    preds = out / "cache" / victim["artefact"] / "preds.npz"
    prob = np.load(preds)["prob"]
    np.savez_compressed(preds, prob=np.tile([[0.9, 0.1]], (len(prob), 1)))  # always class 0
    # and one model that predicts both classes (tiny smoke models may well collapse on their own)
    healthy = next(r for r in records if r["strategy"] == "no_tft" and r["role"] == "weak")
    mixed = np.tile([[0.9, 0.1], [0.2, 0.8]], (len(prob), 1))[: len(prob)]
    np.savez_compressed(out / "cache" / healthy["artefact"] / "preds.npz", prob=mixed)
    for artefact in (victim["artefact"], healthy["artefact"]):  # re-record them, or the report refuses them
        _rerecord(out / "cache" / artefact, "preds.npz")
    doc = write_report(out)
    assert {"strategy": "weak_wts_tft", "role": "wts_aux", "seed": 0, "class": 0} in doc["collapsed"]
    assert not any(c["strategy"] == "no_tft" and c["role"] == "weak" for c in doc["collapsed"])
    assert "collapsed models" in (out / "report.md").read_text()


def test_batching_is_random_where_the_loss_depends_on_the_batch():
    """Length buckets make a batch's rows alike; the auxiliary loss's hardening threshold and fairness'
    batch covariance depend on which rows share a batch, so those stages train on random batches (in the key)."""
    fair, _ = plan(build_config("fairness", "smoke"))
    assert {s.spec.get("batching") for s in fair} == {"random"}
    ood, _ = plan(build_config("ood", "smoke"))
    aux = [s for s in ood if s.spec.get("aux")]
    assert aux and all(s.spec["batching"] == "random" for s in aux)
    assert all("batching" not in s.spec for s in ood if not s.spec.get("aux"))  # length buckets, keys unchanged
    privacy, _ = plan(build_config("privacy", "smoke"))
    assert all("batching" not in s.spec for s in privacy)


def test_eval_batch_size_keys_causal_lm_stages_only():
    """Privacy's weak model samples its generations (the WTS training text) in batches of eval_batch_size from one
    RNG stream, so another batch size gives other generations and other WTS models (measured on the smoke preset:
    other weak_outputs.json, MIA AUC 0.750 vs 0.781): it was not in the key, and a cached stage made at another
    batch size was reused. A classifier's predictions do not depend on it: its keys stay as they were."""
    def dirs(prop, size):
        return sorted(s.dirname for s in plan(build_config(prop, "smoke", overrides={"eval_batch_size": size}), 1)[0])

    assert not set(dirs("privacy", 16)) & set(dirs("privacy", 5))
    assert dirs("fairness", 16) == dirs("fairness", 5)


def test_a_stage_trains_on_the_kind_of_device_its_key_was_planned_for(monkeypatch, tmp_path):
    """An executor's device (a worker's GPU, a Ray task's) used to override the plan's: a CPU-planned stage (its key
    holds cpu_threads and PCG64 dropout) ran on the worker's GPU, and a GPU-planned one on a CPU worker, storing other
    numbers under that key. Now the run's own device is used when the executor's is of the wrong kind, else an error."""
    import torch

    import w2strust.engine.run_stage as stages_mod
    import w2strust.experiment.plan as plan_mod
    from w2strust.errors import W2SError

    cfg = build_config("fairness", "smoke", overrides={"device": "cpu"})
    stage = plan(cfg, threads=1)[0][0]
    seen = {}

    def fake_train(*args, **kwargs):
        seen["device"] = args[8]
        raise RuntimeError("stop here")

    monkeypatch.setattr(stages_mod, "train_classifier", fake_train)
    with pytest.raises(RuntimeError, match="stop here"):  # a GPU worker of a study whose run asks for the CPU
        stages_mod.run_stage(cfg, stage, str(tmp_path / "a"), device="cuda:0")
    assert seen["device"].type == "cpu"
    monkeypatch.setattr(plan_mod, "resolve_device", lambda name: torch.device("cuda"))
    gpu_stage = plan(cfg, threads=1)[0][0]  # planned where CUDA was resolved: no cpu_threads in its key
    assert "cpu_threads" not in gpu_stage.spec
    with pytest.raises(W2SError, match="planned for an accelerator"):
        stages_mod.run_stage(cfg, gpu_stage, str(tmp_path / "b"), device="cpu")
    assert not list((tmp_path / "b").glob("*/meta.json"))


def test_splits_kept_in_memory_are_not_shared_across_precisions(monkeypatch):
    """adversarial's attacked set comes from a surrogate trained in the run's precision: a process running the stages
    of a study that sweeps precision reused the first precision's splits for the other's stages."""
    import w2strust.engine.run_stage as stages_mod
    from w2strust import properties

    prop = properties.get("adversarial")
    calls = []
    monkeypatch.setattr(prop, "load_splits", lambda cfg, seed: calls.append(cfg.precision) or object())
    for precision in ("fp32", "bf16", "fp32"):
        stages_mod.load_splits(build_config("adversarial", "smoke", overrides={"precision": precision}), prop, 0)
    assert calls == ["fp32", "bf16", "fp32"]


def test_classifier_stages_on_the_cpu_use_pcg64_dropout_masks(monkeypatch, tmp_path):
    """The mask source changes every dropout draw, so it is in the key: classifier stages planned for the CPU say
    "pcg64" (training.dropout.PCG64Dropout), and the training loop receives it; privacy's LM stages keep PyTorch's."""
    import w2strust.engine.run_stage as stages_mod

    fair, _ = plan(build_config("fairness", "smoke"))
    assert {s.spec.get("dropout") for s in fair} == {"pcg64"}
    privacy, _ = plan(build_config("privacy", "smoke"))
    assert all("dropout" not in s.spec for s in privacy)
    seen = {}

    def fake_train(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(stages_mod, "train_classifier", fake_train)
    with pytest.raises(RuntimeError, match="stop here"):
        stages_mod.run_stage(build_config("fairness", "smoke"), fair[0], str(tmp_path))
    assert seen["dropout"] == "pcg64"


def test_cpu_stages_are_keyed_and_trained_by_their_thread_count(monkeypatch, tmp_path):
    """PyTorch's CPU reductions round differently with another thread count, so a CPU stage's key records the
    count its executor gives it (--workers 2 on 2 cores: 1) and run_stage trains with exactly that count."""
    import os

    import torch

    import w2strust.engine.run_stage as stages_mod
    from w2strust.engine.scheduler import ExecutorOptions

    cfg = build_config("fairness", "smoke")
    one, _ = plan(cfg, threads=1)
    two, _ = plan(cfg, threads=2)
    assert {s.spec["cpu_threads"] for s in one} == {1} and {s.spec["cpu_threads"] for s in two} == {2}
    assert not {s.key for s in one} & {s.key for s in two}
    assert [s.spec["cpu_threads"] for s in plan(cfg)[0]] == [torch.get_num_threads()] * len(one)
    privacy, _ = plan(build_config("privacy", "smoke"), threads=3)
    assert {s.spec["cpu_threads"] for s in privacy} == {3}  # LM stages too
    assert ExecutorOptions(workers=2).stage_threads() == max(1, (os.cpu_count() or 1) // 2)
    assert ExecutorOptions(workers=2, threads=3).stage_threads() == 3
    assert ExecutorOptions(executor="ray").stage_threads() == 1
    assert ExecutorOptions().stage_threads() == torch.get_num_threads()

    seen = {}

    def fake_train(*args, **kwargs):
        seen["threads"] = torch.get_num_threads()
        raise RuntimeError("stop here")

    before = torch.get_num_threads()
    monkeypatch.setattr(stages_mod, "train_classifier", fake_train)
    try:
        with pytest.raises(RuntimeError, match="stop here"):
            stages_mod.run_stage(cfg, plan(cfg, threads=before + 1)[0][0], str(tmp_path), threads=before)
    finally:
        torch.set_num_threads(before)
    assert seen["threads"] == before + 1


def test_batch_order_without_lengths_is_a_plain_permutation():
    import numpy as np

    from w2strust.training.batches import batch_order

    lengths = np.arange(64)
    plain = batch_order(64, 8, 1, seed=3)
    assert [list(b) for b in plain] == [list(b) for b in batch_order(64, 8, 1, seed=3)]
    assert sorted(np.concatenate(plain)) == list(range(64))
    # buckets: each batch spans a narrow length range; random batches do not
    spread = lambda bs: np.mean([lengths[b].max() - lengths[b].min() for b in bs])  # noqa: E731
    assert spread(batch_order(64, 8, 1, seed=3, lengths=lengths)) < 8 < spread(plain)
