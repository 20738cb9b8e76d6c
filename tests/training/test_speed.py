"""The fast training/prediction path: precision, token cache, length buckets, batched attack queries."""

import numpy as np
import pytest
import torch
from datasets import Dataset

from w2strust.config.build import build_config
from w2strust.config.schema import TrainConfig
from w2strust.errors import W2SError
from w2strust.models import build_classifier
from w2strust.properties.attacks import attack, attack_steps, char_candidates, drive
from w2strust.properties.base import TrustProperty
from w2strust.training import precision
from w2strust.training.batches import batch_order
from w2strust.training.classifier import TokenCache, predict_proba, train_classifier

CPU = torch.device("cpu")


def test_precision_resolves_auto_and_rejects_unknown_names():
    assert precision.resolve("auto", CPU) == ("bf16" if precision.cpu_has_native_bf16() else "fp32")
    for name in ("fp32", "bf16", "fp16"):
        assert precision.resolve(name, CPU) == name
    with pytest.raises(W2SError, match="precision must be one of"):
        precision.resolve("fp8", CPU)
    with pytest.raises(W2SError, match="precision must be one of"):
        build_config("fairness", "smoke", overrides={"precision": "half"})
    # privacy's causal LMs stay fp32 under auto (DP-SGD runs in fp32)
    assert precision.for_task("auto", "generation", CPU) == "fp32"
    assert precision.for_task("auto", "classification", CPU) == precision.resolve("auto", CPU)


def test_precision_is_part_of_the_stage_key():
    from w2strust.experiment.plan import plan

    keys = {p: {s.key for s in plan(build_config("fairness", "smoke", overrides={"precision": p}))[0]}
            for p in ("fp32", "bf16")}
    assert keys["fp32"].isdisjoint(keys["bf16"])


def test_an_fp32_stage_after_a_bf16_one_on_a_gpu_does_not_inherit_tf32(monkeypatch):
    # the TF32 flags are process-global: a bf16 stage turned them on, and an fp32 stage run next in the same worker
    # kept them, under a key that says fp32. Only flags are read (no GPU needed); torch.autocast itself is stubbed.
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: None)
    matmul, was = torch.backends.cuda.matmul, torch.backends.cuda.matmul.allow_tf32
    try:
        matmul.allow_tf32 = False
        cuda = torch.device("cuda")
        precision.autocast("bf16", cuda)
        assert matmul.allow_tf32
        precision.autocast("fp32", cuda)
        assert not matmul.allow_tf32  # torch's default: as in a fresh worker
    finally:
        matmul.allow_tf32 = was


def test_token_cache_pads_like_the_tokenizer():
    _, tok = build_classifier("tiny-bert", 2)
    texts = ["a short one", "a somewhat longer sentence than the first one", "mid length text"]
    cache = TokenCache(tok, 8, Dataset.from_dict({"text": texts}))
    got = cache.collate(cache.lookup(texts), CPU)
    want = tok(texts, padding=True, truncation=True, max_length=8, return_tensors="pt")
    assert torch.equal(got["input_ids"], want["input_ids"])
    assert torch.equal(got["attention_mask"], want["attention_mask"])
    assert cache.lookup(["never seen before"]) == [tok("never seen before")["input_ids"]]


def test_length_buckets_cover_every_row_once_per_epoch_and_cut_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, 1000)
    a = batch_order(1000, 16, 2, seed=7, lengths=lengths)
    b = batch_order(1000, 16, 2, seed=7, lengths=lengths)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))  # seeded
    per_epoch = len(a) // 2
    for epoch in (a[:per_epoch], a[per_epoch:]):
        assert np.array_equal(np.sort(np.concatenate(epoch)), np.arange(1000))

    def padding(batches):
        return sum(int(lengths[i].max()) * len(i) - int(lengths[i].sum()) for i in batches)

    plain = batch_order(1000, 16, 2, seed=7)
    assert padding(a) < 0.2 * padding(plain)
    assert a[0].tolist() != sorted(a[0].tolist())  # still shuffled across buckets
    assert len(batch_order(1000, 16, 0.5, seed=7, lengths=lengths)) == 32  # a fractional epoch


def _sentiment_rows(n: int, seed: int) -> Dataset:
    """A learnable toy task: the label is which cue word the filler text holds."""
    rng = np.random.default_rng(seed)
    filler = "the a movie plot actor scene story film it was and of".split()
    texts, labels = [], []
    for _ in range(n):
        y = int(rng.integers(0, 2))
        words = list(rng.choice(filler, int(rng.integers(3, 12))))
        words.insert(int(rng.integers(0, len(words) + 1)), "great" if y else "awful")
        texts.append(" ".join(words))
        labels.append(y)
    return Dataset.from_dict({"text": texts, "label": labels})


def _accuracy_after_training(prec: str) -> tuple[float, float]:
    train, test = _sentiment_rows(320, 0), _sentiment_rows(200, 1)
    torch.manual_seed(0)
    model, tok = build_classifier("tiny-bert-wide", 2)
    targets = np.eye(2, dtype=np.float32)[np.asarray(train["label"])]
    tcfg = TrainConfig(lr=2e-3, epochs=3, batch_size=32, max_length=24)
    log = train_classifier(model, tok, train, targets, tcfg, TrustProperty(), 0.0, 0, CPU, precision=prec)
    p = predict_proba(model, tok, test, "text", 24, 64, CPU, precision=prec)
    return float((p.argmax(-1) == np.asarray(test["label"])).mean()), log["final_loss"]


def test_bf16_and_fp32_smoke_models_reach_the_same_accuracy():
    """bf16 autocast (what ``auto`` picks on CPUs with native bf16) must not cost accuracy: both precisions
    learn the toy task, and their test accuracies differ by at most 3 points (seed noise of this task)."""
    acc32, _ = _accuracy_after_training("fp32")
    acc16, _ = _accuracy_after_training("bf16")
    assert acc32 >= 0.9 and acc16 >= 0.9
    assert abs(acc32 - acc16) <= 0.03


def test_same_seed_same_numbers_in_bf16():
    assert _accuracy_after_training("bf16") == _accuracy_after_training("bf16")


def test_batched_attack_queries_give_the_one_at_a_time_results():
    weights = {"good": 3.0, "great": 2.0, "fine": 1.0, "bad": -3.0}
    calls = []

    def score(texts):
        calls.append(len(texts))
        z = np.array([sum(weights.get(w, 0.0) for w in t.split()) - 0.5 for t in texts])
        p = 1 / (1 + np.exp(-z))
        return np.stack([1 - p, p], 1)

    texts = ["a good and great movie overall", "a fine film", "a bad movie", "good good fine plot here"]
    alone = [attack(t, 1, score, char_candidates, "charbug", np.random.default_rng([0, i]), 0.5, 3)
             for i, t in enumerate(texts)]
    n_alone = len(calls)
    calls.clear()
    together = drive([attack_steps(t, 1, char_candidates, "charbug", np.random.default_rng([0, i]), 0.5, 3)
                      for i, t in enumerate(texts)], score)
    assert [r.to_dict() for r in together] == [r.to_dict() for r in alone]
    assert len(calls) < n_alone  # the queries of several sentences share scorer calls
