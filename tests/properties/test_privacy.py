"""Privacy end to end on tiny decoders (smoke preset) and its data splits; e-mail text is never printed."""

import json
import shutil

import numpy as np
import pytest

from w2strust.config.build import build_config
from w2strust.config.schema import STRATEGIES
from w2strust.experiment.plan import Runner, plan
from w2strust.properties import get
from w2strust.properties.privacy_metrics import EMAIL_RE

ROLES = ("weak", "wts_naive", "strong_ceiling")


@pytest.fixture(scope="module")
def privacy_run(smoke_run):
    return smoke_run("privacy")


def test_plan_has_no_aux_model_and_shares_weak_models():
    cfg = build_config("privacy", "smoke")
    stages, records = plan(cfg)
    assert sorted(s.kind for s in stages) == ["ceiling", "weak", "weak", "wts", "wts", "wts"]
    assert {r["role"] for r in records} == set(ROLES) and len(records) == len(STRATEGIES) * len(ROLES)
    assert all(not s.spec.get("aux") for s in stages)


def test_smoke_run_writes_every_metric_and_the_dp_budget(privacy_run):
    records = [json.loads(line) for line in (privacy_run / "results.jsonl").read_text().splitlines()]
    by = {(r["strategy"], r["role"]): r for r in records}
    assert set(by) == {(s, r) for s in STRATEGIES for r in ROLES}
    for r in records:
        m = r["metrics"]
        for key in ("extraction_rate", "exact_extraction", "mia_auc", "mia_tpr_at_1fpr", "mia_auc_zlib"):
            assert 0.0 <= m[key] <= 1.0, key
        assert m["perplexity"] > 1.0 and "pii_extraction" in m
    target = build_config("privacy", "smoke").lambda_weak
    eps = {k: r["metrics"]["epsilon"] for k, r in by.items()}
    assert eps[("no_tft", "weak")] == 0 and eps[("weak_tft", "wts_naive")] == 0  # no DP
    for key in (("weak_tft", "weak"), ("weak_wts_tft", "weak"), ("weak_wts_tft", "wts_naive")):
        assert 0 < eps[key] <= target + 1e-6, key  # DP, within the target ε
    summary = json.loads((privacy_run / "summary.json").read_text())
    for s in STRATEGIES:
        assert len(summary["wts_trust"][s]["comparisons"]) == 2
    report = (privacy_run / "report.md").read_text()
    assert "WTS-Aux-Loss" not in report and "extraction_rate" in report and "target DP ε" in report
    assert not EMAIL_RE.search(report)  # aggregate numbers only, no addresses
    weak_dir = privacy_run / "cache" / by[("no_tft", "weak")]["artefact"]
    gens = json.loads((weak_dir / "weak_outputs.json").read_text())
    assert len(gens["prompts"]) == len(gens["generations"]) == build_config("privacy", "smoke").data.n_wts


def test_second_run_trains_nothing(privacy_run, tmp_path):
    out = tmp_path / "run"  # a copy: new results remove the shared run's summary until its report is rewritten
    shutil.copytree(privacy_run, out)
    runner = Runner(build_config("privacy", "smoke"), out)
    runner.run()
    assert runner.trained == []


def test_splits_are_disjoint_and_eval_sets_are_the_same_size(data_dir):
    cfg = build_config("privacy", "smoke", overrides={"data": {"n_weak": 300, "n_wts": 300, "n_test": 100},
                                                       "extra": {"n_eval": 50}})
    s = get("privacy").load_splits(cfg, seed=1)
    w, t, h = set(s.weak["text"]), set(s.wts["text"]), set(s.test["text"])
    assert (len(w), len(t), len(h)) == (300, 300, 100)
    assert not (w & t) and not (w & h) and not (t & h)
    assert len(s.extra["eval_weak"]) == len(s.extra["eval_wts"]) == 50
    assert set(s.extra["eval_weak"]["text"]) <= w and set(s.extra["eval_wts"]["text"]) <= t
    assert np.mean([len(x) for x in s.weak["text"]]) > 200


@pytest.mark.parametrize("override, message", [
    ({"extra": {"dleta": 1e-5}}, "unknown privacy option"),
    ({"extra": {"delta": 2.0}}, "extra.delta"),
    ({"weak_model": "tiny-bert"}, "is an encoder"),
    ({"weak_train": {"epochs": 1.5}}, "whole epochs"),
    ({"extra": {"prefix_tokens": 60, "suffix_tokens": 10}}, "must fit"),
    ({"weak_train": {"max_length": 12}}, r"8 \+ 4\) must fit in weak_train.max_length - 1"),  # 12 = 8 + 4, no BOS room
])
def test_bad_privacy_config_gives_a_clear_error(override, message):
    from w2strust.errors import W2SError

    with pytest.raises(W2SError, match=message):
        build_config("privacy", "smoke", overrides=override)


def test_every_preset_keeps_the_wts_extraction_target_inside_the_trained_prompt():
    """The WTS model trains on the first prompt_tokens tokens of each D_WTS e-mail + the weak model's continuation:
    a suffix past the prompt is text it never saw, which would lower its extraction rate for no privacy reason."""
    from w2strust.errors import W2SError

    prop = get("privacy")
    for preset in prop.presets():
        o = prop.options(build_config("privacy", preset))
        assert o["prefix_tokens"] + o["suffix_tokens"] <= o["prompt_tokens"], preset
    with pytest.raises(W2SError, match="must fit in prompt_tokens"):
        build_config("privacy", "smoke", overrides={"extra": {"prompt_tokens": 10}})


def test_mia_non_members_are_selected_by_length_like_the_members(data_dir, monkeypatch):
    """Members are e-mails of >= EVAL_MIN_CHARS characters; non-members of any length would let length alone move
    the AUC (a pretrained model never fine-tuned scored 0.55 loss / 0.62 zlib AUC on the full preset)."""
    import torch

    from w2strust import models
    from w2strust.properties import privacy as privacy_mod
    from w2strust.properties import privacy_metrics as pm

    cfg = build_config("privacy", "smoke", overrides={"data": {"n_test": 40}})
    prop = get("privacy")
    splits = prop.load_splits(cfg, seed=0)
    lengths = [len(t) for t in splits.test["text"]]
    assert min(lengths) < privacy_mod.EVAL_MIN_CHARS  # the test set holds short e-mails to leave out
    seen = {}
    real = pm.mia_metrics

    def spy(member, nonmember):
        seen["n"] = (len(member["loss"]), len(nonmember["loss"]))
        return real(member, nonmember)

    monkeypatch.setattr(pm, "mia_metrics", spy)
    torch.manual_seed(0)
    model, tok = models.build_causal_lm("tiny-gpt-neox")
    _, metrics = prop.lm_evaluate(model, tok, "weak", splits, cfg, torch.device("cpu"), 64, list(splits.weak["text"]))
    assert seen["n"] == (len(splits.extra["eval_weak"]), sum(n >= privacy_mod.EVAL_MIN_CHARS for n in lengths))
    assert np.isfinite(metrics["perplexity"])


def test_membership_inference_scores_the_extraction_window_of_every_role(data_dir, monkeypatch):
    """A WTS model trained on its D_WTS e-mails' first prompt_tokens only (then the weak model's generation); scored to
    max_length, much of a 'member' was text it never saw. Members and non-members of every role are now scored on
    the start token(s) + prefix_tokens + suffix_tokens, which every role trained on."""
    import torch

    from w2strust import models
    from w2strust.properties import privacy_metrics as pm

    cfg = build_config("privacy", "smoke", overrides={"data": {"n_test": 40}})
    prop = get("privacy")
    splits = prop.load_splits(cfg, seed=0)
    o = prop.options(cfg)
    torch.manual_seed(0)
    model, tok = models.build_causal_lm("tiny-gpt-neox")
    window = len(pm.special_prefix(tok)) + o["prefix_tokens"] + o["suffix_tokens"]
    scored = []
    real = pm.membership_scores

    def spy(logprobs, texts):
        scored.append(sorted({len(lp) for lp in logprobs}))
        return real(logprobs, texts)

    monkeypatch.setattr(pm, "membership_scores", spy)
    for kind in ("wts", "weak"):
        prop.lm_evaluate(model, tok, kind, splits, cfg, torch.device("cpu"), 64, list(splits.weak["text"]))
    assert scored == [[window - 1]] * 4  # members and non-members, WTS and weak: every scored token in the window


def test_a_non_member_whose_window_is_a_member_s_is_left_out_of_the_attack(data_dir, monkeypatch):
    """Two e-mails alike in their first 200 characters are one in the pool, but the scored window can end sooner: a
    held-out e-mail that differs from a member only past the window would score the member's own text as a
    non-member (audit: 0-5 of 500 members per seed in the full preset)."""
    import torch

    from w2strust import models
    from w2strust.properties import privacy_metrics as pm

    cfg = build_config("privacy", "smoke", overrides={"data": {"n_test": 40}})
    prop = get("privacy")
    splits = prop.load_splits(cfg, seed=0)
    torch.manual_seed(0)
    model, tok = models.build_causal_lm("tiny-gpt-neox")
    seen = []
    real = pm.mia_metrics

    def spy(member, nonmember):
        seen.append(len(nonmember["loss"]))
        return real(member, nonmember)

    monkeypatch.setattr(pm, "mia_metrics", spy)
    args = (model, tok, "weak")
    prop.lm_evaluate(*args, splits, cfg, torch.device("cpu"), 64, list(splits.weak["text"]))
    twin = dict(splits.test[0])
    twin["text"] = splits.extra["eval_weak"]["text"][0] + " and one more line past the window"
    splits.test = splits.test.add_item(twin)
    prop.lm_evaluate(*args, splits, cfg, torch.device("cpu"), 64, list(splits.weak["text"]))
    assert seen[1] == seen[0]  # the twin is long enough to be a non-member, and is left out
    other = dict(twin, text="An e-mail no member starts like. " + twin["text"])
    splits.test = splits.test.add_item(other)
    prop.lm_evaluate(*args, splits, cfg, torch.device("cpu"), 64, list(splits.weak["text"]))
    assert seen[2] == seen[0] + 1  # a long e-mail of its own is one


def test_the_perplexity_gap_is_resampled_over_held_out_e_mails(privacy_run):
    # each stage stores every held-out e-mail's summed NLL and scored bytes: the gap metric (bits per byte) of any
    # resample of them, so the gap's CI resamples e-mails (meaningful with one seed), not seeds
    prop = get("privacy")
    for line in (privacy_run / "results.jsonl").read_text().splitlines():
        rec = json.loads(line)
        preds = dict(np.load(privacy_run / "cache" / rec["artefact"] / "preds.npz"))
        assert len(preds["test_nll"]) == len(preds["test_tokens"]) == build_config("privacy", "smoke").data.n_test
        assert prop.task_value(preds, {}, None) == pytest.approx(rec["metrics"]["bits_per_byte"], rel=1e-9)
        ppl = np.exp(preds["test_nll"].sum() / preds["test_tokens"].sum())
        assert ppl == pytest.approx(rec["metrics"]["perplexity"], rel=1e-5)  # the token counts give the perplexity
        half = np.arange(len(preds["test_nll"]) // 2)
        assert prop.task_value(preds, {}, half) != prop.task_value(preds, {}, None)
    gap = json.loads((privacy_run / "summary.json").read_text())["validity"]["strategies"]["weak_wts_tft"]["gap"]
    assert gap["ci_over"] == "test rows" and gap["ci"][0] < gap["ci"][1]
    summary = json.loads((privacy_run / "summary.json").read_text())["validity"]
    assert summary["task_metric"] == "bits_per_byte" and summary["gap_units"] == "bits per byte"


def test_zlib_calibration_compresses_the_scored_text_only():
    from w2strust.models import load_tokenizer
    from w2strust.properties.privacy_metrics import scored_spans, scored_texts

    tok = load_tokenizer("tiny-gpt-neox")
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau"
    cut = scored_texts([text, "short"], scored_spans(tok, [text, "short"], max_length=8))
    assert text.startswith(cut[0]) and len(cut[0]) < len(text) and cut[1] == "short"
    assert tok(cut[0], truncation=True, max_length=8)["input_ids"] == tok(text, truncation=True,
                                                                           max_length=8)["input_ids"]


def test_bits_per_byte_count_the_scored_characters_only(privacy_run):
    from w2strust.models import load_tokenizer
    from w2strust.properties.privacy_metrics import scored_bytes, scored_spans

    tok = load_tokenizer("tiny-gpt-neox")  # BERT-style: [CLS] first, so every text token is scored
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau"
    # 8 tokens: [CLS], six words, [SEP]; the words after the sixth were cut, not scored
    spans = scored_spans(tok, [text], max_length=8)
    assert scored_bytes([text], spans)[0] == len("alpha beta gamma delta epsilon zeta")
    for line in (privacy_run / "results.jsonl").read_text().splitlines():
        rec = json.loads(line)
        preds = dict(np.load(privacy_run / "cache" / rec["artefact"] / "preds.npz"))
        bpb = preds["test_nll"].sum() / np.log(2) / preds["test_bytes"].sum()
        assert rec["metrics"]["bits_per_byte"] == pytest.approx(bpb) and 0 < bpb < 20


def test_pii_is_tested_on_what_the_model_trained_on(data_dir):
    # a WTS model trains on the weak model's prompt + generation: addresses further into its D_WTS e-mails were never
    # in its training text, so the PII metrics take the addresses of the training texts, within max_length
    import torch

    from w2strust import models

    cfg = build_config("privacy", "smoke")
    prop = get("privacy")
    splits = prop.load_splits(cfg, seed=0)
    torch.manual_seed(0)
    model, tok = models.build_causal_lm("tiny-gpt-neox")
    filler = "quarterly numbers attached please review before the meeting " * 2
    texts = [filler + "write to jane.doe@enron.com today", filler * 20 + "or to john.roe@enron.com later"]
    _, metrics = prop.lm_evaluate(model, tok, "wts", splits, cfg, torch.device("cpu"), 64, texts)
    assert metrics["n_pii"] == 1  # the second address lies past the 64-token window
    _, metrics = prop.lm_evaluate(model, tok, "wts", splits, cfg, torch.device("cpu"), 64, [filler])
    assert metrics["n_pii"] == 0  # nothing to complete, whatever the D_WTS e-mails hold
