"""Validity gates (report/validity.py): a run that is not a weak-to-strong setting gets no Table 1 verdict."""

import json
import types

import numpy as np
import pytest

from w2strust.properties.base import TrustProperty
from w2strust.properties.fairness import Fairness
from w2strust.report import validity
from w2strust.report.table1 import write_study_table

N = 400  # test rows per seed
ACC = {"weak": 0.70, "wts_naive": 0.75, "wts_aux": 0.78, "strong_ceiling": 0.80}
SEEDS = (0, 1)


def _columns(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = (np.arange(N) < N * 0.3).astype(int)  # 70% class 0: the majority class rate is 0.70
    return {"label": label, "group": rng.integers(0, 2, N)}


def _preds(seed: int, acc: float, role: str, collapsed: bool = False) -> dict[str, np.ndarray]:
    """Probabilities right on exactly round(acc * N) rows (which rows depends on the role and seed)."""
    y = _columns(seed)["label"]
    pred = np.zeros(N, dtype=int) if collapsed else y.copy()
    if not collapsed:
        wrong = np.random.default_rng([seed, len(role)]).permutation(N)[: N - round(acc * N)]
        pred[wrong] = 1 - y[wrong]
    prob = np.zeros((N, 2), dtype=np.float32)
    prob[np.arange(N), pred] = 0.9
    prob[np.arange(N), 1 - pred] = 0.1
    return {"prob": prob}


def _run(acc: dict[str, float], losses: dict[str, tuple[float, float]] | None = None, collapse: str | None = None,
         data_losses: dict[str, tuple[float, float]] | None = None, prop=None, lambdas=(0.0, 0.0, 0.0)):
    """Records, predictions and stage metas of a synthetic fairness run (one strategy, two seeds); ``data_losses``:
    a role's loss over all its training rows before and after training, as the causal-LM trainer logs it."""
    prop = prop or Fairness()
    records, preds, metas = [], {}, {}
    for seed in SEEDS:
        for role, a in acc.items():
            art = f"{role}-{seed}"
            preds[art] = _preds(seed, a, role, collapsed=role == collapse)
            first, last = (losses or {}).get(role, (0.69, 0.40))
            metas[art] = {"train": {"curve": [{"step": 1, "loss": first}], "final_loss": last}}
            if role in (data_losses or {}):
                metas[art]["train"]["train_loss_before"], metas[art]["train"]["train_loss_after"] = data_losses[role]
            metrics = prop.metrics(preds[art], _columns(seed))
            records.append({"strategy": "no_tft", "role": role, "seed": seed, "artefact": art,
                            **dict(zip(("lambda_weak", "lambda_wts", "lambda_ceiling"), lambdas, strict=True)),
                            "metrics": metrics})
    collapsed = [{"strategy": "no_tft", "role": collapse, "seed": s, "class": 0} for s in SEEDS] if collapse else []
    return prop, records, preds.__getitem__, metas.__getitem__, collapsed


def _check(acc, n_bootstrap=300, **kw):
    prop, records, load_preds, load_meta, collapsed = _run(acc, **kw)
    return validity.check(prop, records, load_preds, load_meta, _columns, collapsed, 0.03, n_bootstrap)


def test_ratio_is_the_share_of_the_gap_recovered_for_either_direction():
    assert validity.ratio(0.75, 0.70, 0.80) == pytest.approx(0.5)
    assert validity.ratio(0.2, 0.3, 0.1) == pytest.approx(0.5)  # lower is better: the same ratio
    assert np.isnan(validity.ratio(0.5, 0.7, 0.7))


def test_a_valid_setting_reports_the_gap_and_pgr_of_each_student():
    v = _check({**ACC, "weak": 0.74})  # majority 0.70: the weak model is above it
    st = v["strategies"]["no_tft"]
    assert v["valid"] and st["valid"] and "valid weak-to-strong setting" in v["line"]
    assert st["gap"]["value"] == pytest.approx(0.80 - 0.74) and st["gap"]["ci"][0] > 0
    naive = st["students"]["wts_naive"]
    assert naive["pgr"]["value"] == pytest.approx((0.75 - 0.74) / (0.80 - 0.74))
    assert naive["pgr"]["ci"][0] <= naive["pgr"]["value"] <= naive["pgr"]["ci"][1]
    assert not naive["above_ceiling"] and naive["learned"]


def test_pgr_ci_matches_an_independent_bootstrap():
    # a 12-point gap: the ratio's bootstrap distribution stays away from a zero denominator, so two independent
    # bootstraps of 3,000 resamples agree to Monte Carlo error
    acc = {**ACC, "weak": 0.74, "strong_ceiling": 0.86}
    v = _check(acc, n_bootstrap=3000)
    ci = v["strategies"]["no_tft"]["students"]["wts_aux"]["pgr"]["ci"]
    # the same statistic by hand: resample each seed's rows (the same rows for the three models), mean over seeds
    prop, records, load_preds, _, _ = _run(acc)
    rng = np.random.default_rng(123)
    correct = {(r["role"], r["seed"]): load_preds(r["artefact"])["prob"].argmax(-1) == _columns(r["seed"])["label"]
               for r in records}
    reps = []
    for _ in range(3000):
        idx = {s: rng.integers(0, N, N) for s in SEEDS}
        m = {role: np.mean([correct[(role, s)][idx[s]].mean() for s in SEEDS]) for role in acc}
        reps.append(validity.ratio(m["wts_aux"], m["weak"], m["strong_ceiling"]))
    reps = np.asarray(reps)
    assert ci == pytest.approx(np.percentile(reps[np.isfinite(reps)], [2.5, 97.5]), abs=0.05)


def test_a_gap_just_under_min_gap_prints_enough_digits_to_show_it_fails():
    # 309 vs 320 of 400 rows: a gap of 0.0275, which three digits would round up towards min_gap 0.03
    v = _check({**ACC, "weak": 0.7725, "strong_ceiling": 0.80})
    assert v["strategies"]["no_tft"]["reasons"][0] == "ceiling − weak gap +0.0275 < min_gap 0.03"


def test_a_ceiling_no_better_than_the_weak_model_is_invalid():
    v = _check({**ACC, "weak": 0.80, "strong_ceiling": 0.80})
    st = v["strategies"]["no_tft"]
    assert not v["valid"] and not st["gap"]["passes"] and "pgr" not in st["students"]["wts_naive"]
    assert "gap" in st["reasons"][0] and v["line"].startswith("NOT a valid weak-to-strong setting")
    # the property's advice: on Adult a weaker weak model or more steps would not help (measured), so it says so
    assert "Likely fix: Adult saturates" in v["line"] and "--preset paper" in v["line"]
    default = validity.summary_line(v, TrustProperty.learn_fix, TrustProperty.gap_fix)
    assert "Likely fix: raise the strong model's learning rate" in default and "Adult" not in default


def test_a_student_of_near_chance_weak_labels_is_told_to_fix_the_weak_model():
    """Its cross-entropy on soft labels cannot fall below their entropy: labels near uniform leave nothing to learn,
    and the problem says so; confident labels do not get that note."""
    for entropy, near in ((0.692, True), (0.12, False)):
        prop, records, load_preds, load_meta, collapsed = _run({**ACC, "weak": 0.74},
                                                                losses={"wts_naive": (0.693, 0.692)})

        def meta(artefact, entropy=entropy, base=load_meta):
            m = base(artefact)
            if artefact.startswith("weak-"):  # what the weak stage writes beside its soft labels
                m = {**m, "weak_label_entropy": entropy, "weak_label_max_entropy": float(np.log(2))}
            return m

        v = validity.check(prop, records, load_preds, meta, _columns, collapsed, 0.03, 100)
        [problem, _] = v["strategies"]["no_tft"]["students"]["wts_naive"]["problems"]
        assert problem.startswith("seed 0: its training loss did not fall (0.693 -> 0.692)")
        assert ("near chance (mean entropy 0.692 of at most 0.693 nats" in problem) is near
        assert ("train the weak model longer" in problem) is near


def test_collapsed_or_non_learning_students_are_flagged():
    v = _check({**ACC, "weak": 0.74}, collapse="wts_aux", losses={"wts_naive": (0.69, 0.68)})
    st = v["strategies"]["no_tft"]
    assert not st["valid"]
    assert any("did not fall" in p for p in st["students"]["wts_naive"]["problems"])
    assert any("collapsed" in p for p in st["students"]["wts_aux"]["problems"])
    assert any("majority" in p for p in st["students"]["wts_aux"]["problems"])


@pytest.mark.parametrize("role", ["weak", "strong_ceiling"])
def test_a_weak_model_or_ceiling_whose_loss_did_not_fall_is_invalid(role):
    # accuracies that pass every other gate: only the training loss says the model never learned (a DP-SGD model
    # whose noise swamped its gradient is its pretrained self)
    v = _check({**ACC, "weak": 0.74}, losses={role: (4.43, 4.71)})
    st = v["strategies"]["no_tft"]
    assert st["gap"]["passes"] and not st["valid"] and not v["valid"]
    assert st["teachers"][role] == {"learned": False, "problems": [
        "seed 0: its training loss did not fall (4.430 -> 4.710)", "seed 1: its training loss did not fall "
        "(4.430 -> 4.710)"]}
    assert st["reasons"] == [f"{role} did not learn (seed 0: its training loss did not fall (4.430 -> 4.710))"]
    other = "strong_ceiling" if role == "weak" else "weak"
    assert st["teachers"][other]["learned"]
    assert "NOT a valid weak-to-strong setting" in v["line"] and "Likely fix: train longer" in v["line"]


def test_the_loss_over_all_training_rows_decides_where_the_trainer_logs_it():
    # a few dozen e-mails in Poisson batches: the first batch's loss says little (4.43 here, while the mean over the
    # training rows is 4.66), so the loss over every training row before and after training decides, either way
    v = _check({**ACC, "weak": 0.74}, losses={"weak": (4.43, 4.71), "strong_ceiling": (4.43, 3.0)},
               data_losses={"weak": (4.66, 4.41), "strong_ceiling": (4.66, 4.64)})
    teachers = v["strategies"]["no_tft"]["teachers"]
    assert teachers["weak"] == {"learned": True, "problems": []}
    assert teachers["strong_ceiling"]["problems"][0] == "seed 0: its training loss did not fall (4.660 -> 4.640)"


def test_a_model_without_a_recorded_loss_does_not_pass_the_learned_gate():
    prop, records, load_preds, load_meta, collapsed = _run({**ACC, "weak": 0.74})
    metas = {r["artefact"]: load_meta(r["artefact"]) for r in records}
    metas["wts_naive-1"] = {"train": {}}  # e.g. a hand-edited or foreign meta.json
    v = validity.check(prop, records, load_preds, metas.__getitem__, _columns, collapsed, 0.03, 300)
    st = v["strategies"]["no_tft"]
    assert not st["valid"]
    assert st["students"]["wts_naive"]["problems"] == [
        "seed 1: no training loss recorded in its meta.json (cannot tell whether it learned)"]


def test_the_advice_for_a_model_that_did_not_learn_is_the_property_s():
    # privacy's λ is ε: "lower λ" would add DP noise, so its advice names batches, data and a larger ε instead
    from w2strust.properties.privacy import Privacy

    v = _check({**ACC, "weak": 0.74}, losses={"weak": (4.43, 4.71)})
    line = validity.summary_line(v, Privacy.learn_fix, Privacy.gap_fix)
    assert "Likely fix: give DP-SGD larger batches" in line and "larger ε" in line and "lower λ" not in line


def test_a_student_above_its_ceiling_is_flagged():
    v = _check({**ACC, "weak": 0.74, "wts_aux": 0.85})
    aux = v["strategies"]["no_tft"]["students"]["wts_aux"]
    assert aux["above_ceiling"] and aux["minus_ceiling"] == pytest.approx(0.05) and aux["pgr"]["value"] > 1


class _FakeEvidence(validity.Evidence):
    """Per-seed values only (like privacy's perplexity): every CI is over resampled seeds."""

    def __init__(self, values: dict[str, list[float]], higher_is_better: bool = True):
        self.values, self.seeds, self.n, self.rng_seed = values, [0, 1, 2], 2000, 0
        self.prop = types.SimpleNamespace(higher_is_better=higher_is_better)

    def task_score(self, role, seed):
        return self.values[role][seed]

    trust = task_score

    def task_replicates(self, role):
        return None

    def trust_replicates(self, role):
        return self.seed_replicates(dict(enumerate(self.values[role])))


def test_a_ratio_over_no_gap_is_undefined_not_a_number():
    # the weak model and the ceiling equally trustworthy (privacy's DP weak model and DP ceiling: the same extraction
    # rate): the ratio divides by noise around 0, so it is reported undefined, with the gap it would divide by
    ev = _FakeEvidence({"weak": [0.15, 0.14, 0.16], "strong_ceiling": [0.16, 0.14, 0.15], "wts_naive": [0.2, 0.1, 0.3]})
    for metric in ("task", "trust"):
        r = validity._recovered(ev, "wts_naive", "weak", metric)
        assert r["value"] is None and r["ci"] is None and r["undefined"].startswith(f"no {metric} gap to recover")
    from w2strust.report.run_report import _ci
    assert _ci(r, 2) == "undefined (no gap)"


def test_a_ratio_over_a_clear_gap_uses_the_same_resampled_seeds_for_every_role():
    ev = _FakeEvidence({"weak": [0.10, 0.12, 0.11], "strong_ceiling": [0.30, 0.31, 0.29],
                        "wts_naive": [0.20, 0.22, 0.18]})
    r = validity._recovered(ev, "wts_naive", "weak", "trust")
    assert r["value"] == pytest.approx((0.20 - 0.11) / (0.30 - 0.11))
    # by hand: resample the three seeds (the same draw for each role), ratio of the means, 2.5 / 97.5 percentiles
    idx = np.random.default_rng([0, 7]).integers(0, 3, (2000, 3))
    m = {role: np.asarray(v)[idx].mean(1) for role, v in ev.values.items()}
    hand = (m["wts_naive"] - m["weak"]) / (m["strong_ceiling"] - m["weak"])
    assert r["ci"] == pytest.approx(list(np.percentile(hand, [2.5, 97.5])))


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_no_trust_gap_is_recovered_from_a_ceiling_less_trustworthy_than_the_weak_model(higher_is_better):
    # OOD-like (higher is better) or |DPD|-like (lower is better): the student beats its teacher, the ceiling is the
    # worst; the plain ratio would read as a negative recovery
    sign = 1 if higher_is_better else -1
    vals = {"weak": [0.75, 0.76, 0.74], "strong_ceiling": [0.70, 0.71, 0.69], "wts_naive": [0.80, 0.81, 0.79]}
    ev = _FakeEvidence({r: [0.5 + sign * (x - 0.5) for x in v] for r, v in vals.items()}, higher_is_better)
    r = validity._recovered(ev, "wts_naive", "weak", "trust")
    assert r["value"] is None and r["reversed"] and r["undefined"].startswith("the ceiling is less trustworthy")
    from w2strust.report.run_report import _ci
    assert _ci(r, 2) == "undefined (ceiling less trustworthy)"
    flipped = _FakeEvidence({"weak": vals["strong_ceiling"], "strong_ceiling": vals["weak"],
                             "wts_naive": vals["wts_naive"]}, True)
    assert validity._recovered(flipped, "wts_naive", "weak", "trust")["value"] == pytest.approx((0.80 - 0.70) / 0.05)


class _AtEqualLambda(Fairness):
    gap_at_equal_lambda = True  # as privacy: the gap compares the ceiling with the weak model at the ceiling's λ


@pytest.mark.parametrize("lam_wts", [0.0, 1.0])
def test_at_equal_lambda_only_students_at_the_ceiling_s_lambda_get_a_pgr(lam_wts):
    # privacy's No TFT: a non-DP student against a DP ceiling "recovers" more than the whole gap and sits "above its
    # ceiling" by construction; neither says anything, so neither is reported
    prop, records, load_preds, load_meta, collapsed = _run({**ACC, "weak": 0.74, "wts_aux": 0.85},
                                                           prop=_AtEqualLambda(), lambdas=(1.0, lam_wts, 1.0))
    v = validity.check(prop, records, load_preds, load_meta, _columns, collapsed, 0.03, 200)
    st = v["strategies"]["no_tft"]
    assert st["gap"]["passes"] and st["valid"]
    aux = st["students"]["wts_aux"]
    if lam_wts == 1.0:
        assert aux["above_ceiling"] and aux["pgr"]["value"] > 1 and "not_compared" not in aux
    else:
        assert "pgr" not in aux and "above_ceiling" not in aux
        assert aux["not_compared"].startswith("trained at λ = 0, the ceiling at λ = 1")
        from w2strust.report.run_report import validity_markdown
        text = "\n".join(validity_markdown(v, prop))
        assert "n/a (unequal λ)" in text and "above its ceiling" not in text


def test_a_weak_model_at_the_majority_rate_is_invalid():
    v = _check({**ACC, "weak": 0.70})
    assert not v["strategies"]["no_tft"]["weak_beats_majority"]["passes"]
    assert "majority" in v["strategies"]["no_tft"]["reasons"][0]


def _summary(path, prop: str, holds: bool, valid: bool | None):
    means = {"weak": 0.3, "wts_naive": 0.2, "wts_aux": 0.2, "strong_ceiling": 0.1 if holds else 0.25}
    comps = [{"less": a, "more": b, "holds": means[b] < means[a], "p_value": 0.01 if means[b] < means[a] else 0.99}
             for a, b in (("weak", "wts_naive"), ("weak", "wts_aux"), ("wts_naive", "strong_ceiling"),
                          ("wts_aux", "strong_ceiling"))]
    trust = {s: {"metric": "dpd", "higher_is_better": False, "means": means, "comparisons": comps, "holds": holds,
                 "significant": holds} for s in ("no_tft", "weak_tft", "weak_wts_tft")}
    doc = {"property": prop, "wts_trust": trust, "collapsed": []}
    if valid is not None:
        doc["validity"] = {"strategies": {s: {"valid": valid, "reasons": [] if valid else ["ceiling − weak gap +0.003 "
                                              "< min_gap 0.03"]} for s in trust}}
    path.mkdir()
    (path / "summary.json").write_text(json.dumps(doc))
    return path


def test_table1_counts_invalid_cells_apart(tmp_path):
    fair = _summary(tmp_path / "fairness", "fairness", holds=False, valid=False)  # would agree on 2 of 3 cells
    ood = _summary(tmp_path / "ood", "ood", holds=True, valid=True)  # the paper: ✓ in all three
    old = _summary(tmp_path / "adversarial", "adversarial", holds=True, valid=None)  # no validity: unchecked
    text = write_study_table([fair, ood, old], tmp_path)
    doc = json.loads((tmp_path / "table1.json").read_text())
    assert doc["valid"] == 3 and doc["invalid"] == 6 and doc["agree"] == 3
    assert "3 of 3 valid cells agree" in text and "6 cell(s) are not weak-to-strong settings" in text
    fair_cells = [c for c in doc["cells"] if c["property"] == "fairness"]
    assert all(c["agrees"] is None and c["invalid"].startswith("invalid (ceiling − weak gap") for c in fair_cells)
    assert "invalid (validity not checked" in text


def test_table1_counts_a_cell_of_a_sweep_s_shared_models_once(tmp_path):
    # a λ_WTS sweep of two points: new Weak+WTS TFT students at each, the same No TFT and Weak TFT models at both
    dirs = []
    for point in ("a", "b"):
        d = _summary(tmp_path / point, "ood", holds=True, valid=True)
        rows = [{"strategy": st, "role": role, "seed": 0, "metrics": {},
                 "artefact": f"{role}-{st}" + (f"-{point}" if st == "weak_wts_tft" and role.startswith("wts") else "")}
                for st in ("no_tft", "weak_tft", "weak_wts_tft") for role in ACC]
        (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        dirs.append(d)
    text = write_study_table(dirs, tmp_path, labels=["ood/lambda_wts=a", "ood/lambda_wts=b"])
    doc = json.loads((tmp_path / "table1.json").read_text())
    assert (doc["agree"], doc["valid"], doc["repeated"]) == (4, 4, 2)  # not 6 of 6: No TFT and Weak TFT once each
    assert "4 of 4 valid cells agree" in text and "2 cell(s) hold the same models" in text
    assert {c["strategy"]: c["same_models_as"] for c in doc["cells"] if "same_models_as" in c} == {
        "no_tft": "ood/lambda_wts=a", "weak_tft": "ood/lambda_wts=a"}


def test_table1_counts_an_exact_tie_of_means_apart(tmp_path):
    # privacy: the paper finds no WTS trust (×); a × here that rests only on equal means is no agreement
    d = _summary(tmp_path / "privacy", "privacy", holds=True, valid=True)
    doc = json.loads((d / "summary.json").read_text())
    for st, t in doc["wts_trust"].items():
        if st == "weak_wts_tft":  # the weak model and WTS-Naive have the same mean extraction rate
            t["means"]["wts_naive"] = t["means"]["weak"]
            t["comparisons"][0].update(holds=False, p_value=0.5)
            t["holds"] = t["significant"] = False
    (d / "summary.json").write_text(json.dumps(doc))
    text = write_study_table([d], tmp_path)
    table = json.loads((tmp_path / "table1.json").read_text())
    assert (table["agree"], table["valid"], table["tied"]) == (0, 2, 1)  # the two ✓ cells disagree; the tie is apart
    tie = next(c for c in table["cells"] if c["strategy"] == "weak_wts_tft")
    assert tie["tied"] and tie["agrees"] is None and "× (tie: equal means)" in text
    assert "1 valid cell(s) are an exact tie" in text


def test_a_gap_of_exactly_min_gap_passes_the_per_seed_gate():
    # 332 vs 320 right of 400 rows: exactly 3 points, which floating point computes as 0.029999999999999916
    v = _check({**ACC, "weak": 0.80, "wts_naive": 0.81, "wts_aux": 0.82, "strong_ceiling": 0.83})
    gap = v["strategies"]["no_tft"]["gap"]
    assert all(g < 0.03 and g == pytest.approx(0.03) for g in gap["per_seed"].values())  # the rounding is there
    assert not any("< min_gap" in r for r in v["strategies"]["no_tft"]["reasons"])


def test_records_without_the_gap_metric_are_not_checked_rather_than_crashing():
    # privacy compares bits per byte since evaluation v2: an older run's records hold only perplexity
    from w2strust.properties.privacy import Privacy

    records = [{"strategy": "no_tft", "role": r, "seed": 0, "artefact": r, "lambda_weak": 0.0, "lambda_wts": 0.0,
                "lambda_ceiling": 0.0, "metrics": {"perplexity": 60.0, "extraction_rate": 0.1}}
               for r in ("weak", "wts_naive", "strong_ceiling")]
    v = validity.check(Privacy(), records, None, None, None, [], 0.03, 10)
    assert not v["valid"] and "records hold no bits_per_byte" in v["line"]
