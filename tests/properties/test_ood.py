import json

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification

from w2strust.config.build import build_config
from w2strust.data.sst2 import BASE_STYLE, load_ood_styles
from w2strust.properties.ood import OODRobustness, distinct_phrases, embedding_noise, id_splits


def _tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=2,
    )
    return BertForSequenceClassification(cfg)


def test_noise_hook_perturbs_embeddings_in_training_only_with_the_requested_std():
    model = _tiny_bert()
    emb = model.get_input_embeddings()
    ids = torch.randint(0, 50, (64, 16))
    clean = emb.weight[ids].detach()
    with embedding_noise(model, 0.1):
        model.train()
        noise = emb(ids).detach() - clean
        assert noise.std().item() == pytest.approx(0.1, rel=0.05)
        assert noise.mean().item() == pytest.approx(0.0, abs=0.01)
        logits_a, logits_b = model(input_ids=ids).logits, model(input_ids=ids).logits
        assert not torch.allclose(logits_a, logits_b)  # fresh noise on every forward, reaches the output
        model.eval()
        assert torch.equal(emb(ids), clean)
        assert torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)
    model.train()
    assert len(emb._forward_hooks) == 0
    assert torch.equal(emb(ids), clean)  # removed cleanly: training mode no longer perturbs


def test_noise_hook_is_removed_when_training_raises_and_zero_std_adds_no_hook():
    model = _tiny_bert()
    emb = model.get_input_embeddings()
    with pytest.raises(RuntimeError), embedding_noise(model, 0.5):
        assert len(emb._forward_hooks) == 1
        raise RuntimeError("training crashed")
    assert len(emb._forward_hooks) == 0
    with embedding_noise(model, 0.0):
        assert len(emb._forward_hooks) == 0


def test_id_splits_follow_the_paper_and_are_disjoint():
    pool = Dataset.from_dict({"text": [f"s{i}" for i in range(1000)], "label": [i % 2 for i in range(1000)]})
    train, val, held = id_splits(pool, seed=3)
    assert (len(train), len(val), len(held)) == (475, 25, 500)  # 50% -> 95/5, 50% held out
    sets = [set(d["text"]) for d in (train, val, held)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert len(sets[0] | sets[1] | sets[2]) == 1000
    assert (
        id_splits(pool, seed=3)[1]["text"] == val["text"]
        and id_splits(pool, seed=4)[1]["text"] != val["text"]
    )


def test_distinct_phrases_keeps_each_phrase_once_and_drops_those_with_two_labels():
    pool = Dataset.from_dict({"text": ["a fine film", "dull", "A  fine film ", "mixed", "mixed", "dull"],
                              "label": [1, 0, 1, 1, 0, 0]})
    assert distinct_phrases(pool)["text"] == ["a fine film", "dull"]


def test_no_d_t_phrase_is_also_a_training_phrase(data_dir):
    """GLUE SST-2 train holds 371 phrases twice; split by row, some landed in D_T and in D_W or D_WTS."""
    cfg = build_config("ood", "full", overrides={"data": {"data_dir": data_dir, "n_weak": 1_000_000}})
    splits = OODRobustness().load_splits(cfg, seed=1)

    def norm(d):
        return {" ".join(t.lower().split()) for t in d["text"]}

    train = norm(splits.weak) | norm(splits.wts)
    assert len(splits.weak) + len(splits.wts) + len(splits.test) == len(train) + len(norm(splits.test))
    assert not norm(splits.test) & train


def test_a_style_file_without_shifted_styles_is_refused_before_anything_trains(tmp_path):
    """Only 'base' gave an OOD accuracy of NaN after the first stage had trained, blamed on the learning rate."""
    from w2strust.data.sst2 import _styles
    from w2strust.errors import W2SError

    with pytest.raises(W2SError, match="no shifted style"):
        _styles(tmp_path / "style.json", {BASE_STYLE: [{"id": 0, "label": 1, "sentence": "fine"}]})


def test_ood_styles_are_aligned_by_id(data_dir):
    styles = load_ood_styles(data_dir)
    assert len(styles) == 11 and BASE_STYLE in styles
    base = styles[BASE_STYLE]
    for ds in styles.values():
        assert len(ds) == 872 and ds["id"] == base["id"] and ds["label"] == base["label"]
    assert styles["shake_p0"]["text"][0] != base["text"][0]


def test_load_splits_sizes_and_no_ood_sources_in_training(data_dir):
    cfg = build_config("ood", "smoke", overrides={"data": {"data_dir": data_dir}})
    splits = OODRobustness().load_splits(cfg, seed=0)
    assert (len(splits.weak), len(splits.wts), len(splits.test)) == (200, 200, 100)
    ood = splits.extra["ood"]
    assert len(ood) == 11 * 40
    n = 40
    for s in range(11):  # style-major layout: every style block lists the same sentences in the same order
        assert ood["id"][s * n : (s + 1) * n] == ood["id"][:n]
    sources = {" ".join(t.lower().split()) for t in ood.filter(lambda r: r["style"] == BASE_STYLE)["text"]}
    for d in (splits.weak, splits.wts, splits.test):
        assert not sources & {" ".join(t.lower().split()) for t in d["text"]}


def test_metrics_and_bootstrap_fast_path_on_known_predictions():
    prop = OODRobustness()
    styles = np.asarray([BASE_STYLE, "shake_p0", "tweet_p0"])
    ood_label = np.array([1, 0, 1, 0])
    ood_pred = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0]])  # per sentence, per style
    preds = {"ood_prob": np.eye(2)[ood_pred], "prob": np.eye(2)[[1, 1, 0]]}
    cols = {"ood_label": ood_label, "label": np.array([1, 0, 0]), "styles": styles}
    m = prop.metrics(preds, cols)
    assert m["task_accuracy"] == pytest.approx(2 / 3)
    assert m["sst2_dev_accuracy"] == 1.0
    assert m["ood_accuracy/shake_p0"] == pytest.approx(0.5) and m["ood_accuracy/tweet_p0"] == pytest.approx(
        0.5
    )
    assert m["ood_accuracy"] == pytest.approx(0.5)  # base is not an OOD style
    assert prop.trust_value(preds, cols) == pytest.approx(m["ood_accuracy"])
    p, c = prop.resample(preds, cols, np.array([0, 0, 1, 1]))
    assert p["ood_prob"].shape == (4, 3, 2) and list(c["ood_label"]) == [1, 1, 0, 0]
    assert prop.trust_value(p, c) == pytest.approx(
        0.75
    )  # sentence 0: 1/2 shifted styles right, sentence 1: 2/2


def test_ood_smoke_run_end_to_end(smoke_run):
    out = smoke_run("ood")
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 12
    for r in records:
        m = r["metrics"]
        assert 0 <= m["task_accuracy"] <= 1 and 0 <= m["ood_accuracy"] <= 1
        assert len([k for k in m if k.startswith("ood_accuracy/")]) == 10
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["trust_metric"] == "ood_accuracy"
        and summary["wts_trust"]["weak_tft"]["significant"] is not None
    )
    assert "ood_accuracy" in (out / "report.md").read_text()
