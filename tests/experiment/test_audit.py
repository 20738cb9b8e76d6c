"""Runs a researcher can audit: smoke runs with local model folders, every stage's audit record and training
curve, the training-curves figure, readable saved-model paths, TensorBoard logging."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from w2strust.cli import main
from w2strust.config.build import build_config
from w2strust.engine import audit
from w2strust.experiment.saved_models import POINTER, link_saved_models
from w2strust.properties import get
from w2strust.training.curve import TrainingCurve

AUDIT_FIELDS = ("versions", "git", "device", "dtype", "model", "started")
VERSIONED = ("torch", "transformers", "peft", "opacus", "fairlearn", "datasets")


def check_stage_meta(run: Path) -> list[dict]:
    metas = [json.loads(p.read_text()) for p in sorted((run / "cache").glob("*/meta.json"))]
    assert metas
    for meta in metas:
        a = meta["audit"]
        for key in AUDIT_FIELDS:
            assert key in a, key
        for pkg in VERSIONED:
            assert a["versions"][pkg][0].isdigit(), (pkg, a["versions"][pkg])
        assert a["device"] == "cpu" and a["dtype"] == "float32"
        assert set(a["git"]) == {"commit", "dirty"}
        assert meta["seconds"] > 0
        curve = meta["train"]["curve"]
        assert curve and curve[-1]["step"] == meta["train"]["steps"]
        assert all(np.isfinite(p["loss"]) and p["lr"] >= 0 for p in curve)
        assert [p["step"] for p in curve] == sorted({p["step"] for p in curve})
    return metas


@pytest.fixture(scope="module")
def fairness_local(tmp_path_factory, save_tiny):
    """The fairness smoke run with a local save_pretrained folder as the strong model."""
    root = tmp_path_factory.mktemp("fair_local")
    strong = save_tiny("tiny-bert-wide", root / "my-strong-model")
    out = root / "run"
    assert main(["run", "fairness", "--preset", "smoke", "--strategies", "weak_wts_tft", "--set",
                 f"strong_model={strong}", "--set", "save_models=true", "--log", "tensorboard",
                 # fp32: the test compares the saved model's fp32 outputs with the cached predictions
                 "--precision", "fp32", "--out", str(out)]) == 0
    return out, strong


def test_fairness_run_with_a_local_strong_model_is_audited(fairness_local):
    out, strong = fairness_local
    metas = check_stage_meta(out)
    strong_stages = [m for m in metas if m["stage"] != "weak"]
    assert len(strong_stages) == 3  # ceiling, WTS-Naive, WTS-Aux
    for m in strong_stages:
        assert m["audit"]["model"]["source"] == "local" and m["audit"]["model"]["path"] == str(Path(strong).resolve())
        assert m["spec"]["model"] == f"local-sha256:{m['audit']['model']['sha256']}"  # the key holds no path
    aux = [m for m in metas if m["spec"].get("aux")]
    assert len(aux) == 1
    alphas = [p["alpha"] for p in aux[0]["train"]["curve"]]
    assert alphas[0] < alphas[-1] == pytest.approx(build_config("fairness", "smoke").alpha_max)
    assert all(0 < p["threshold"] < 1 for p in aux[0]["train"]["curve"])
    report = (out / "report.md").read_text()
    assert "## Training curves" in report and "![Training curves](training_curves.png)" in report
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_saved_models_have_readable_paths_that_from_pretrained_loads(fairness_local):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, _ = fairness_local
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    cfg = build_config("fairness", "smoke")
    test = get("fairness").load_splits(cfg, 0).test
    for r in records:
        path = out / "models" / r["strategy"] / r["role"] / f"seed{r['seed']}"
        assert path.is_symlink() and path.resolve() == (out / "cache" / r["artefact"] / "model").resolve()
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        tok = AutoTokenizer.from_pretrained(path)
        with torch.no_grad():  # the same model that made the stage's test predictions
            enc = tok(list(test["text"][:3]), padding=True, truncation=True, max_length=cfg.strong_train.max_length,
                      return_tensors="pt")
            prob = model(**enc).logits.softmax(-1).numpy()
        with np.load(out / "cache" / r["artefact"] / "preds.npz") as z:
            np.testing.assert_allclose(prob, z["prob"][:3], atol=1e-4)


def test_tensorboard_holds_every_models_curve(fairness_local):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = fairness_local
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for r in records:
        events = EventAccumulator(str(out / "tensorboard" / r["strategy"] / r["role"] / f"seed{r['seed']}")).Reload()
        curve = json.loads((out / "cache" / r["artefact"] / "meta.json").read_text())["train"]["curve"]
        logged = events.Scalars("train/loss")
        assert [e.step for e in logged] == [p["step"] for p in curve]
        np.testing.assert_allclose([e.value for e in logged], [p["loss"] for p in curve], rtol=1e-6)
        assert events.Scalars("test/dpd")[0].value == pytest.approx(r["metrics"]["dpd"], abs=1e-6)
        assert ("train/alpha" in events.Tags()["scalars"]) == (r["role"] == "wts_aux")


@pytest.mark.slow
def test_privacy_run_with_a_local_decoder(tmp_path, save_tiny):
    strong = save_tiny("tiny-gpt-neox-wide", tmp_path / "my-decoder", causal=True)
    out = tmp_path / "run"
    assert main(["run", "privacy", "--preset", "smoke", "--strategies", "no_tft", "--set", f"strong_model={strong}",
                 "--out", str(out)]) == 0
    metas = check_stage_meta(out)
    assert {m["audit"]["model"]["source"] for m in metas if m["stage"] != "weak"} == {"local"}
    assert "![Training curves](training_curves.png)" in (out / "report.md").read_text()


def test_git_state_is_unknown_outside_a_checkout(tmp_path):
    assert audit.git_state(tmp_path) == {"commit": "unknown", "dirty": "unknown"}
    state = audit.git_state()  # the tests run from a checkout
    assert len(state["commit"]) == 40 and isinstance(state["dirty"], bool)


def test_training_curve_keeps_at_most_about_100_points():
    curve = TrainingCurve(total_steps=250)
    for step in range(1, 251):
        curve.add(step, float(step), lr=0.1, alpha=0.5)
    assert curve.every == 3 and len(curve.points) == 84 and curve.points[-1]["step"] == 250
    assert curve.points[0] == {"step": 3, "loss": 2.0, "lr": 0.1, "alpha": 0.5}  # mean of steps 1-3
    assert curve.points[-1]["loss"] == 250.0  # the last point covers the lone step 250


def test_saved_model_path_falls_back_to_hard_links_then_a_pointer(tmp_path, monkeypatch):
    model = tmp_path / "cache" / "wts-abc" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    record = {"strategy": "no_tft", "role": "wts_naive", "seed": 0, "artefact": "wts-abc"}

    def refuse(*args, **kwargs):
        raise OSError("not permitted")

    monkeypatch.setattr(Path, "symlink_to", refuse)
    (link,) = link_saved_models(tmp_path / "run", tmp_path / "cache", [record])
    assert not link.is_symlink() and os.path.samefile(link / "config.json", model / "config.json")
    monkeypatch.setattr(os, "link", refuse)
    (link,) = link_saved_models(tmp_path / "run", tmp_path / "cache", [record])
    assert (link / POINTER).read_text().strip() == str(model.resolve())


def test_log_wandb_without_the_package_says_how_to_install(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed (importing it raises ImportError)
    assert main(["run", "fairness", "--preset", "smoke", "--log", "wandb", "--out", str(tmp_path / "r")]) == 2
    assert ("w2strust: error: --log wandb needs the wandb package, which is not installed: pip install "
            "'w2strust[wandb]'") in capsys.readouterr().err
    assert not (tmp_path / "r" / "cache").exists()  # stopped before training anything


def test_a_run_that_stops_early_leaves_the_folders_config_yaml_as_it_was(tmp_path, monkeypatch, capsys):
    """config.yaml describes the results.jsonl beside it (report and curves read both): a rerun with other settings
    that stops before its results are written (a missing --log package, a data error, Ctrl-C) must not replace it,
    or the rebuilt report names the new λ for the old models."""
    import sys

    out = tmp_path / "r"
    out.mkdir()
    (out / "config.yaml").write_text("property: fairness\npreset: smoke\nlambda_wts: 2.0\n")
    monkeypatch.setitem(sys.modules, "wandb", None)
    assert main(["run", "fairness", "--preset", "smoke", "--set", "lambda_wts=5", "--log", "wandb",
                 "--out", str(out)]) == 2
    assert "wandb" in capsys.readouterr().err
    assert (out / "config.yaml").read_text() == "property: fairness\npreset: smoke\nlambda_wts: 2.0\n"


def test_a_stage_cached_without_its_weights_is_retrained_when_they_are_asked_for(fairness_local, tmp_path):
    import shutil

    from w2strust.experiment.plan import Runner

    out, strong = fairness_local
    copy = shutil.copytree(out, tmp_path / "copy", symlinks=True)
    victim = sorted((copy / "cache").glob("wts-*"))[0]
    shutil.rmtree(victim / "model")
    cfg = build_config("fairness", "smoke", overrides={"strategies": ["weak_wts_tft"], "strong_model": strong,
                                                       "save_models": True, "precision": "fp32"})
    runner = Runner(cfg, copy)
    runner.run()
    assert runner.trained == [victim.name] and (victim / "model" / "config.json").exists()


def test_saved_model_link_resolves_when_the_run_folder_is_reached_through_a_symlink(tmp_path):
    """``--out /tmp/run`` where /tmp is a symlink (macOS: /private/tmp; clusters: /scratch -> /lustre/...): the link's
    relative path must be computed from where it physically lies, or it points at nothing."""
    real = tmp_path / "real"
    model = real / "cache" / "wts-abc" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    alias = tmp_path / "mnt" / "scratch"  # at another depth than the folder it names
    alias.parent.mkdir()
    alias.symlink_to(real, target_is_directory=True)
    record = {"strategy": "no_tft", "role": "wts_naive", "seed": 0, "artefact": "wts-abc"}
    (link,) = link_saved_models(alias / "run", alias / "cache", [record])
    assert (link / "config.json").read_text() == "{}"


def test_saved_model_paths_are_those_of_this_run_only(tmp_path):
    """A rerun into the same folder with fewer seeds (or strategies) must not keep the previous run's
    models/<strategy>/<role>/seed<k> paths: they would name models this run's results.jsonl does not hold."""
    for art in ("wts-a", "wts-b"):
        (tmp_path / "cache" / art / "model").mkdir(parents=True)
    rec = {"strategy": "no_tft", "role": "wts_naive", "seed": 0, "artefact": "wts-a"}
    link_saved_models(tmp_path / "run", tmp_path / "cache", [rec, {**rec, "seed": 1, "artefact": "wts-b"}])
    assert (tmp_path / "run" / "models" / "no_tft" / "wts_naive" / "seed1").exists()
    link_saved_models(tmp_path / "run", tmp_path / "cache", [rec])
    assert not (tmp_path / "run" / "models" / "no_tft" / "wts_naive" / "seed1").exists()
    assert (tmp_path / "run" / "models" / "no_tft" / "wts_naive" / "seed0").exists()
    assert (tmp_path / "cache" / "wts-b" / "model").is_dir()  # only the path went, not the weights


def test_stages_cached_by_other_package_versions_are_pointed_out(smoke_run, tmp_path, capsys):
    """Stage keys leave package versions out (an upgrade would retrain everything); a reused stage of another torch is
    said, once, with the versions, so a last-digit difference from a fresh run has its explanation."""
    import shutil

    copy = shutil.copytree(smoke_run("fairness", "--strategies", "no_tft"), tmp_path / "copy")
    capsys.readouterr()
    assert main(["run", "fairness", "--preset", "smoke", "--strategies", "no_tft", "--out", str(copy)]) == 0
    assert "other package versions" not in capsys.readouterr().err  # the same versions: nothing to say
    meta_path = sorted((copy / "cache").glob("weak-*/meta.json"))[0]
    meta = json.loads(meta_path.read_text())
    meta["audit"]["versions"]["torch"] = "1.13.1"
    meta_path.write_text(json.dumps(meta))
    assert main(["run", "fairness", "--preset", "smoke", "--strategies", "no_tft", "--out", str(copy)]) == 0
    err = capsys.readouterr().err
    assert "1 cached stage(s) were trained with other package versions: torch 1.13.1 (now " in err
