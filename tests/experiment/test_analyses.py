"""The paper's analyses: sensitivity curves, the ceiling's λ by rule, relative OOD noise, Table 1 vs the paper."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from w2strust.cli import main
from w2strust.config.build import build_config
from w2strust.errors import W2SError
from w2strust.experiment.ceiling_rule import suggest
from w2strust.experiment.plan import plan
from w2strust.experiment.study import load_study
from w2strust.properties import get
from w2strust.report.sensitivity import write_curves
from w2strust.report.table1 import PAPER_TABLE1, write_study_table

ROLES = ("weak", "wts_naive", "wts_aux", "strong_ceiling")
STRATS = ("no_tft", "weak_tft", "weak_wts_tft")


def _fake_run(path, overrides, dpd_of, seeds=(0, 1)):
    """A run folder as `w2strust run` writes it (config.yaml + results.jsonl) with chosen metric values."""
    cfg = build_config("fairness", "smoke", overrides=overrides)
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    lines = []
    for seed in seeds:
        for strategy in STRATS:
            for k, role in enumerate(ROLES):
                dpd = dpd_of(cfg, strategy, k) + 0.01 * seed
                lines.append(json.dumps({"strategy": strategy, "role": role, "seed": seed, "artefact": "x",
                                         "metrics": {"dpd": dpd, "task_accuracy": 0.8 - dpd}}))
    (path / "results.jsonl").write_text("\n".join(lines) + "\n")
    return path


def test_curves_plot_every_role_against_the_varied_key_with_std_over_seeds(tmp_path):
    runs = [_fake_run(tmp_path / f"lam{lam}", {"lambda_wts": lam}, lambda c, s, k: c.lambda_wts / 10 + k / 100)
            for lam in (0.5, 2.0, 5.0)]
    dup = tmp_path / "lam2.0-again"  # the same experiment under a second name (a study's shared base point)
    shutil.copytree(runs[1], dup)
    doc = write_curves([*runs, dup], tmp_path / "out")
    assert doc["key"] == "lambda_wts" and [p["x"] for p in doc["points"]] == [0.5, 2.0, 5.0]
    st = doc["points"][1]["metrics"]["weak_wts_tft"]["wts_aux"]["dpd"]
    assert st["n"] == 2 and st["mean"] == pytest.approx(0.2 + 0.02 + 0.005)
    assert st["std"] == pytest.approx(np.std([0.22, 0.23], ddof=1))
    for name in doc["files"]:
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert (tmp_path / "out" / "curve-lambda_wts.png").read_bytes()[:4] == b"\x89PNG"


def test_curves_move_keys_together_and_refuse_two_independent_settings(tmp_path):
    together = [_fake_run(tmp_path / f"t{lam}", {"lambda_weak": lam, "lambda_wts": lam}, lambda c, s, k: 0.1)
                for lam in (1.0, 3.0)]
    doc = write_curves(together, tmp_path / "o1")
    assert doc["keys"] == ["lambda_weak", "lambda_wts"]
    mixed = [_fake_run(tmp_path / "m1", {"lambda_wts": 1.0, "alpha_max": 0.1}, lambda c, s, k: 0.1),
             _fake_run(tmp_path / "m2", {"lambda_wts": 2.0, "alpha_max": 0.3}, lambda c, s, k: 0.1)]
    with pytest.raises(W2SError, match="also in") as e:
        write_curves(mixed, tmp_path / "o2")
    assert str(e.value).endswith("(pass only the folders of one sweep, where nothing but alpha_max varies)")
    with pytest.raises(W2SError, match="also in") as e:  # --key given: no advice to give --key
        write_curves(mixed, tmp_path / "o3", "lambda_wts")
    assert str(e.value).endswith("(pass only folders that differ in lambda_wts, the --key given)")


def test_model_size_curve_uses_the_strong_models_parameter_count(tmp_path, capsys):
    runs = [_fake_run(tmp_path / m, {"strong_model": m}, lambda c, s, k: 0.1) for m in ("minilm-l6", "mpnet-base")]
    assert main(["curves", *map(str, runs), "--out", str(tmp_path / "o")]) == 0
    doc = json.loads((tmp_path / "o" / "curve-strong_model.json").read_text())
    assert [p["x"] for p in doc["points"]] == [22.7, 109.5] and doc["fixed"] == {"weak_model": "tiny-bert"}
    assert "curve-strong_model.png" in capsys.readouterr().out


def test_relative_ood_noise_scales_with_the_embedding_rms():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=64))
    emb = model.get_input_embeddings()
    with torch.no_grad():
        emb.weight.mul_(5.0)  # a model with larger embeddings gets proportionally larger noise
    rms = emb.weight.pow(2).mean().sqrt().item()
    ids = torch.randint(0, 50, (64, 16))
    model.train()
    with get("ood").train_context(model, 0.5):
        noise = (emb(ids) - emb.weight[ids]).detach()
    assert noise.std().item() == pytest.approx(0.5 * rms, rel=0.05)


def test_ood_stage_keys_record_the_noise_semantics():
    stages, _ = plan(build_config("ood", "smoke"))
    assert all(s.spec["semantics"] == {"noise": "relative to embedding RMS", "pool": "distinct phrases"}
               for s in stages)
    assert all("semantics" not in s.spec for s in plan(build_config("fairness", "smoke"))[0])


@pytest.mark.slow
def test_auto_ceiling_trains_every_candidate_and_picks_by_the_rule(tmp_path):
    out = tmp_path / "run"
    argv = ["run", "fairness", "--preset", "smoke", "--strategies", "no_tft", "--set", "lambda_ceiling=auto",
            "--set", "ceiling_lambdas=[0, 5]", "--set", "data.n_weak=80", "--set", "data.n_wts=80", "--out", str(out)]
    assert main(argv) == 0
    sel = json.loads((out / "ceiling.json").read_text())
    assert [p["lambda"] for p in sel["points"]] == [0, 5]
    assert sel["suggested_lambda"] == suggest(sel["points"], get("fairness"), 0.015)
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    ceiling = next(r for r in records if r["role"] == "strong_ceiling")
    assert all(r["lambda_ceiling"] == sel["suggested_lambda"] for r in records)
    chosen = json.loads((out / "cache" / ceiling["artefact"] / "meta.json").read_text())
    assert chosen["spec"]["lambda"] == sel["suggested_lambda"]
    assert len(list((out / "cache").glob("ceiling-*"))) == 2  # both candidates are ordinary cached stages
    report = (out / "report.md").read_text()
    assert "lambda_ceiling: auto" in report and (out / "ceiling-tradeoff.png").exists()
    assert json.loads((out / "summary.json").read_text())["ceiling_selection"]["rule"].startswith("the most")


def test_auto_ceiling_config_errors():
    with pytest.raises(W2SError, match="ceiling_lambdas"):
        build_config("fairness", "smoke", overrides={"lambda_ceiling": "auto", "ceiling_lambdas": [1, 1]})
    with pytest.raises(W2SError, match="adversarial loss weight"):
        build_config("adversarial", "smoke", overrides={"lambda_ceiling": "auto", "ceiling_lambdas": [0, 2]})
    with pytest.raises(W2SError, match="lambda_ceiling"):
        build_config("fairness", "smoke", overrides={"lambda_ceiling": "best"})
    cfg = build_config("fairness", "smoke", overrides={"lambda_ceiling": "auto"})
    assert cfg.ceiling_candidates(get("fairness").lambda_grid) == list(get("fairness").lambda_grid)


def _summary(path, prop, verdicts):
    """A summary.json whose WTS-trust cells hold as given (trust metric: lower is better)."""
    trust = {}
    for strategy, holds in verdicts.items():
        means = {"weak": 0.3, "wts_naive": 0.2, "wts_aux": 0.2, "strong_ceiling": 0.1 if holds else 0.25}
        comps = [{"less": a, "more": b, "holds": means[b] < means[a], "p_value": 0.01 if means[b] < means[a] else 0.99}
                 for a, b in (("weak", "wts_naive"), ("weak", "wts_aux"), ("wts_naive", "strong_ceiling"),
                              ("wts_aux", "strong_ceiling"))]
        trust[strategy] = {"metric": "dpd", "higher_is_better": False, "means": means, "comparisons": comps,
                           "holds": holds, "significant": holds}
    path.mkdir()
    gates = {"strategies": {s: {"valid": True, "reasons": []} for s in trust}}  # a weak-to-strong setting
    (path / "summary.json").write_text(json.dumps({"property": prop, "wts_trust": trust, "collapsed": [],
                                                   "validity": gates}))
    return path


def test_table1_is_set_against_the_paper_cell_by_cell(tmp_path):
    fair = _summary(tmp_path / "fairness", "fairness", {"no_tft": False, "weak_tft": False, "weak_wts_tft": False})
    ood = _summary(tmp_path / "ood", "ood", dict(PAPER_TABLE1["ood"]))
    text = write_study_table([fair, ood], tmp_path)
    doc = json.loads((tmp_path / "table1.json").read_text())
    assert doc["agree"] == 5 and len(doc["cells"]) == 6 and doc["firm"] == 5 and doc["invalid"] == 0
    assert "5 of 6 valid cells agree" in text
    why = next(c["why"] for c in doc["cells"] if not c["agrees"])
    assert "fairness / Weak+WTS TFT" in why and "0.250" in why and "p = 0.990" in why


STUDY = Path(__file__).resolve().parents[2] / "configs" / "study-analyses-smoke.yaml"
CURVE_KEYS = ("lambda_wts", "lambda_weak", "alpha_max", "aux_warmup", "strong_train-epochs", "strong_model")


def test_shipped_analyses_study_is_valid_for_all_four_properties():
    _, runs = load_study(STUDY)
    assert {r.cfg.property for r in runs} == {"fairness", "ood", "adversarial", "privacy"}
    assert all(r.cfg.lambda_ceiling == "auto" for r in runs)
    swept = {k for r in runs if r.cfg.property == "ood" for k in r.point}
    assert swept == {"lambda_wts", "lambda_weak", "alpha_max", "aux_warmup", "strong_train.epochs", "models"}


@pytest.mark.slow
def test_shipped_analyses_study_draws_every_figure(tmp_path):
    out = tmp_path / "study"
    assert main(["study", str(STUDY), "--properties", "fairness", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for key in CURVE_KEYS:
        for kind in ("curve", "tradeoff"):
            png = out / "curves" / "fairness" / f"{kind}-{key}.png"
            assert png.read_bytes()[:4] == b"\x89PNG" and f"{kind}-{key}.png" in report
    doc = json.loads((out / "curves" / "fairness" / "curve-strong_model.json").read_text())
    assert doc["fixed"] == {"weak_model": "tiny-bert"} and len(doc["points"]) == 2
    # the base point is shared by every grid (several folders): one seed is counted once
    assert all(r["dpd"]["n"] == 1 for p in doc["points"] for s in p["metrics"].values() for r in s.values())
    assert "cells agree with the paper's Table 1" in report
    base = out / "fairness" / "lambda_wts=2"
    for name in ("figure2.png", "figure2-eo_tpr_gap.png", "ceiling-tradeoff.png"):
        assert (base / name).exists()
    assert json.loads((base / "ceiling.json").read_text())["suggested_lambda"] in (0, 2)
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0  # a study folder: rebuilt from its run folders alone
    assert (out / "report.md").read_text() == report


def test_a_bootstrap_p_of_zero_reads_below_its_resolution(tmp_path):
    """No resample against a comparison is p < 1/resamples (0.002 at the default 500), not "p = 0.000"."""
    from w2strust.report.results import fmt_p

    assert fmt_p(0.0, 500) == "p < 0.002" and fmt_p(0.0, 1000) == "p < 0.001" and fmt_p(0.25, 500) == "p = 0.250"
    fair = _summary(tmp_path / "fairness", "fairness", {"no_tft": True, "weak_tft": False, "weak_wts_tft": False})
    summary = json.loads((fair / "summary.json").read_text())
    cell = summary["wts_trust"]["no_tft"]
    cell["resamples"] = 500
    for c in cell["comparisons"]:
        c["p_value"] = 0.0
    (fair / "summary.json").write_text(json.dumps(summary))
    text = write_study_table([fair], tmp_path)
    assert "p<0.002" in text and "p=0.000" not in text
    why = next(c["why"] for c in json.loads((tmp_path / "table1.json").read_text())["cells"]
               if c["strategy"] == "no_tft")
    assert "p < 0.002" in why


def test_a_fixed_ceiling_rerun_in_an_auto_run_folder_drops_the_old_selection(tmp_path):
    """A run folder used again (same --out) with a fixed lambda_ceiling after lambda_ceiling: auto kept the old
    ceiling.json: the report then showed 'the strong ceiling's λ (lambda_ceiling: auto)' with the old curve and chosen
    λ beside results made at another λ, and the study index said 'ceiling λ chosen by rule'."""
    out = tmp_path / "run"
    common = ["run", "fairness", "--preset", "smoke", "--strategies", "no_tft", "--set", "data.n_weak=80",
              "--set", "data.n_wts=80", "--out", str(out)]
    assert main(common + ["--set", "lambda_ceiling=auto", "--set", "ceiling_lambdas=[0, 5]"]) == 0
    assert (out / "ceiling.json").exists()
    assert main(common + ["--set", "lambda_ceiling=5"]) == 0  # every stage cached: nothing trains
    assert not (out / "ceiling.json").exists() and not (out / "ceiling-tradeoff.png").exists()
    assert "ceiling_selection" not in json.loads((out / "summary.json").read_text())
    assert "lambda_ceiling: auto" not in (out / "report.md").read_text()
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert {r["lambda_ceiling"] for r in records} == {5.0}


def test_the_curves_of_a_two_setting_grid_say_at_which_value_of_the_other_each_is_drawn(tmp_path):
    """A study grid of λ_WTS × α_max gives one λ_WTS curve per α_max (and one α_max curve per λ_WTS): the curves went
    to folders 1 and 2 under the same heading and figure title, nothing saying which α_max each was drawn at."""
    from w2strust.report.sensitivity import markdown, study_curves

    runs = [_fake_run(tmp_path / f"l{lam}-a{a}", {"lambda_wts": lam, "alpha_max": a},
                      lambda c, s, k: c.lambda_wts / 10 + c.alpha_max)
            for lam in (0.5, 2.0) for a in (0.1, 0.3)]
    docs = study_curves(runs, tmp_path / "curves")
    by_key = {}
    for doc in docs:
        by_key.setdefault(doc["key"], []).append(doc)
    assert sorted(d["held"]["alpha_max"] for d in by_key["lambda_wts"]) == [0.1, 0.3]
    assert sorted(d["held"]["lambda_wts"] for d in by_key["alpha_max"]) == [0.5, 2.0]
    for doc in by_key["lambda_wts"]:
        at = doc["held"]["alpha_max"]
        assert f"against lambda_wts (at alpha_max = {at})" in markdown(doc)
        assert all(p["metrics"]["no_tft"]["weak"]["dpd"]["mean"] == pytest.approx(p["x"] / 10 + at + 0.005)
                   for p in doc["points"])  # each curve holds only its own α_max's runs
        saved = json.loads((tmp_path / "curves" / doc["folder"] / "curve-lambda_wts.json").read_text())
        assert saved["held"] == {"alpha_max": at}
