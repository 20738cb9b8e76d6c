import json

import numpy as np
import pytest
import torch

from w2strust.config.build import build_config
from w2strust.data.advglue import load_advglue_dev, parse_advglue_plus_plus
from w2strust.errors import W2SError
from w2strust.properties.adversarial import AdversarialRobustness
from w2strust.properties.attacks import EmbeddingNeighbours, attack, char_candidates, edit_budget, opposite, run_attacks
from w2strust.training.losses import soft_cross_entropy

WEIGHTS = {"good": 3.0, "great": 2.0, "fine": 1.0, "superb": 2.5, "bad": -3.0, "awful": -2.5}


def toy_score(texts: list[str]) -> np.ndarray:
    """A bag-of-words sentiment model: p(positive) = sigmoid(Σ weights − 0.5); unknown words count 0."""
    z = np.array([sum(WEIGHTS.get(w, 0.0) for w in t.split()) - 0.5 for t in texts])
    p = 1 / (1 + np.exp(-z))
    return np.stack([1 - p, p], 1)


def _levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def test_char_attack_flips_the_toy_model_within_its_budget():
    text = "a good and great movie overall"
    res = attack(
        text, 1, toy_score, char_candidates, "charbug", np.random.default_rng(0), max_frac=0.5, max_words=3
    )
    assert res.status == "success" and res.adv is not None
    assert toy_score([res.adv])[0].argmax() == 0 and toy_score([text])[0].argmax() == 1
    before, after = text.split(), res.adv.split()
    assert len(before) == len(after)
    diff = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert sorted(diff) == sorted(res.changed)
    assert 0 < len(diff) <= edit_budget(len(before), 0.5, 3)
    assert all(
        _levenshtein(before[i], after[i]) <= 2 for i in diff
    )  # one swap/deletion/substitution per word


def test_attack_respects_a_budget_too_small_to_flip_and_skips_wrong_predictions():
    text = "a good and great movie overall"
    res = attack(
        text, 1, toy_score, char_candidates, "charbug", np.random.default_rng(0), max_frac=0.5, max_words=1
    )
    assert res.status == "failed" and len(res.changed) <= 1
    # the failed attack's text keeps the edits it made (an unselected test set uses it), one word at most here
    assert res.adv is not None and sum(a != b for a, b in zip(res.adv.split(), text.split(), strict=True)) == len(
        res.changed)
    skipped = attack("a bad movie", 1, toy_score, char_candidates, "charbug", np.random.default_rng(0))
    assert skipped.status == "skipped" and skipped.adv is None


def test_attacks_are_deterministic_for_a_seed():
    texts = [
        "a good movie with superb acting",
        "great fun and a fine cast",
        "an awful bad film",
        "good good great",
    ]
    labels = [1, 1, 0, 1]
    table = {"good": ["fine", "decent"], "great": ["fine"], "superb": ["ok"]}

    def run(seed: int) -> list[dict]:
        methods = {"charbug": char_candidates, "wordsub": lambda w, rng: table.get(w, [])}
        results = run_attacks(texts, labels, toy_score, methods, seed, max_frac=0.5, progress=False)
        return [r.to_dict() for r in results]

    first = run(7)
    assert first == run(7)
    assert {r["method"] for r in first} == {"charbug", "wordsub"}
    assert any(r["status"] == "success" for r in first)


def test_word_substitution_uses_neighbours_and_the_polarity_and_negation_guards():
    vocab = ["good", "bad", "fine", "nice", "movie", "film", "predictable", "unpredictable", "the", "##ing"]
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 16))
    emb = np.concatenate([base + 0.05 * rng.normal(size=(len(vocab), 16))])  # every word close to every other
    emb[vocab.index("movie")] = -base[0]  # far from the adjectives
    emb[vocab.index("film")] = -base[0] + 0.01
    pol = {"good": 1, "bad": 0, "fine": 1, "nice": 1}
    nb = EmbeddingNeighbours(vocab, emb, k=5, min_similarity=0.5, polarity=pol)
    cands = nb("good")
    assert "bad" not in cands and {"fine", "nice"} <= set(cands)  # antonym by polarity is refused
    assert "the" not in cands and "##ing" not in cands and "good" not in cands
    assert nb("movie") == ["film"]  # only neighbours above the similarity threshold, none polar
    assert "unpredictable" not in nb("predictable")
    res = attack("a good movie", 1, toy_score, nb, "wordsub", np.random.default_rng(0), max_frac=1.0)
    assert res.status == "success" and res.adv.split()[1] in {"fine", "nice"}




def test_scalar_words_and_negations_are_neither_replaced_nor_used_as_replacements():
    # the opposite pairs measured in mpnet-base's embeddings: none is labelled by SST-2's polarity lexicon
    vocab = ["often", "rarely", "frequently", "somebody", "nobody", "someone", "before", "after", "prior",
             "movie", "film"]
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(1, 16)) + 0.05 * rng.normal(size=(len(vocab), 16))  # every word close to every other
    nb = EmbeddingNeighbours(vocab, emb, k=10, min_similarity=0.5, polarity={})
    for word in ("often", "rarely", "somebody", "nobody", "before", "after"):
        assert nb(word) == [], word  # not replaced
    assert set(nb("movie")) == {"film", "prior"}  # and not used
    # one sentence: wordsub leaves its only scalar word as it is, so nothing is left to attack
    res = attack("often great", 1, toy_score, nb, "wordsub", np.random.default_rng(0), max_frac=1.0)
    assert res.status != "success" and res.changed == []


def test_wordnet_opposites_are_refused_in_every_inflection():
    # the swaps to the opposite that generator version 5 still made (bench/README.md "Attack guards"), none labelled
    # by SST-2's polarity lexicon: big -> small 10 times, thin -> thick 6, larger -> smaller, tightly -> loosely ...
    for a, b in [("big", "small"), ("larger", "smaller"), ("larger", "small"), ("thin", "thick"), ("richer", "poorer"),
                 ("tightly", "loosely"), ("remembering", "forgetting"), ("accepting", "rejecting"), ("huge", "tiny"),
                 ("broader", "narrower"), ("adequate", "insufficient")]:
        assert opposite(a, b) and opposite(b, a), (a, b)
    for a, b in [("big", "large"), ("huge", "massive"), ("movie", "film"), ("sweetly", "nicely"), ("big", "big")]:
        assert not opposite(a, b), (a, b)
    vocab = ["big", "small", "smaller", "large", "huge", "movie"]
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(1, 16)) + 0.05 * rng.normal(size=(len(vocab), 16))  # every word close to every other
    nb = EmbeddingNeighbours(vocab, emb, k=10, min_similarity=0.5, polarity={})
    assert set(nb("big")) == {"large", "huge", "movie"}
    assert set(nb("smaller")) == {"small", "movie"}


def test_charbug_leaves_stop_words_and_negations_alone():
    rng = np.random.default_rng(0)
    for word in ("not", "Not", "never", "nothing", "without", "hardly", "the", "with"):
        assert char_candidates(word, rng) == [], word
    assert char_candidates("great", rng)  # content words are still edited
    res = attack("not never good", 1, toy_score, char_candidates, "charbug", np.random.default_rng(0),
                 max_frac=1.0, max_words=3)
    assert res.adv is not None and res.adv.split()[:2] == ["not", "never"]
def test_adversarial_loss_mixes_clean_and_adversarial_terms_with_lambda():
    logits = {
        "text": torch.tensor([[2.0, -1.0], [0.5, 0.2]]),
        "text_adv": torch.tensor([[-1.0, 1.0], [0.0, 3.0]]),
    }
    calls = []

    def forward(batch, column="text"):
        calls.append(column)
        return logits[column]

    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    clean, adv = soft_cross_entropy(logits["text"], targets), soft_cross_entropy(logits["text_adv"], targets)
    prop = AdversarialRobustness()
    got = prop.train_loss(forward, {}, targets, soft_cross_entropy, 0.3)
    assert got.item() == pytest.approx((0.7 * clean + 0.3 * adv).item())
    assert adv.item() > clean.item() + 1  # the two terms differ, so the weight matters
    calls.clear()
    assert prop.train_loss(forward, {}, targets, soft_cross_entropy, 0.0).item() == pytest.approx(
        clean.item()
    )
    assert calls == ["text"]  # λ = 0: the adversarial text is not even read


def test_advglue_plus_plus_parser_keeps_clean_text_and_method():
    lines = "\n".join(
        json.dumps(r)
        for r in [
            {
                "idx": 0,
                "sentence": "a g00d film",
                "original_sentence": "a good film",
                "label": 1,
                "method": "textbugger",
            },
            {"idx": 1, "sentence": "fine", "label": 0, "method": "semattack"},
        ]
    )
    rows = parse_advglue_plus_plus(lines, "sst2")
    assert rows[0] == {
        "text": "a good film",
        "text_adv": "a g00d film",
        "label": 1,
        "method": "textbugger",
        "task": "sst2",
    }
    assert rows[1]["text"] == rows[1]["text_adv"] == "fine"
    pair = parse_advglue_plus_plus(
        json.dumps(
            {
                "premise": "p",
                "hypothesis": "h2",
                "original_hypothesis": "h",
                "label": 2,
                "method": "textfooler",
            }
        ),
        "mnli",
    )[0]
    assert pair["text"] == "premise: p hypothesis: h" and pair["text_adv"] == "premise: p hypothesis: h2"


def test_a_clean_sentence_attacked_by_several_methods_stays_in_one_split():
    """AdvGLUE++ holds one row per (source sentence, attack method): the 40/40/20 split is by clean text per task,
    so no clean sentence is in two of D_W, D_WTS, D_T (a split by row put most D_T sentences in D_W too)."""
    from w2strust.properties.adversarial import split_by_source

    methods = ["textbugger", "textfooler", "bertattack", "sememepso", "semattack"]
    texts = [f"{task} sentence {i}" for task in ("sst2", "qnli") for i in range(50) for _ in methods]
    tasks = [t.split()[0] for t in texts]
    parts = split_by_source(texts, tasks, seed=0)
    assert sorted(i for p in parts for i in p) == list(range(len(texts)))
    clean = [{texts[i] for i in p} for p in parts]
    assert not (clean[0] & clean[1]) and not (clean[0] & clean[2]) and not (clean[1] & clean[2])
    for t in ("sst2", "qnli"):  # 40/40/20 of each task's 50 sentences
        assert [sum(tasks[i] == t for i in p) for p in parts] == [20 * 5, 20 * 5, 10 * 5]
    # one row per clean text (the offline generator): the split by row of before, row for row
    unique = [f"s{i}" for i in range(37)]
    idx = np.random.default_rng(3).permutation(37)
    assert split_by_source(unique, ["sst2"] * 37, seed=3) == [idx[:14].tolist(), idx[14:29].tolist(),
                                                             idx[29:].tolist()]


def test_advglue_dev_sst2_has_148_items(data_dir):
    ds = load_advglue_dev(data_dir, ["sst2"])
    assert len(ds) == 148 and set(ds["label"]) == {0, 1}


@pytest.fixture(scope="module")
def adv_run(smoke_run):
    return smoke_run("adversarial")


def test_generated_triplets_split_40_40_20_disjoint_by_source(adv_run, data_dir):
    """Sentences are split 40/40/20; the models train on the attacks that flipped the surrogate, and the test set is
    every sentence of its partition, whether the attack succeeded, failed or was skipped: not selected by it."""
    cfg = build_config("adversarial", "smoke", overrides={"data": {"data_dir": data_dir}})
    splits = AdversarialRobustness().load_splits(cfg, seed=0)
    n_attacked = cfg.extra["n_attack"]
    assert len(splits.test) == n_attacked - int(0.8 * n_attacked)
    sources = [set(d["source"]) for d in (splits.weak, splits.wts, splits.test)]
    assert not (sources[0] & sources[1]) and not (sources[0] & sources[2]) and not (sources[1] & sources[2])
    for d in (splits.weak, splits.wts):
        assert set(d["status"]) == {"success"}
        assert all(a != b for a, b in zip(d["text"], d["text_adv"], strict=True))
    assert set(splits.test["status"]) <= {"success", "failed", "skipped"} and len(set(splits.test["status"])) > 1
    assert set(splits.test["method"]) <= {"charbug", "wordsub"}
    assert len(splits.extra["advglue"]) == 148


def test_the_surrogate_must_be_neither_the_weak_nor_the_strong_model():
    with pytest.raises(W2SError, match="extra.surrogate = tiny-bert-wide is also the weak or strong model"):
        build_config("adversarial", "smoke", overrides={"extra": {"surrogate": "tiny-bert-wide"}})
    with pytest.raises(W2SError, match="extra.neighbour_model = minilm-l6"):
        build_config("adversarial", "quick", overrides={"extra": {"neighbour_model": "minilm-l6"}})


def test_one_nested_option_overrides_only_itself():
    # extra.surrogate_train.lr alone replaced the whole mapping: the surrogate trained 1 epoch in batches of 16
    # (TrainConfig's defaults), not the documented 2 epochs of 32, without a word
    quick = build_config("adversarial", "quick", overrides={"extra": {"surrogate_train": {"lr": 3e-4}}})
    assert quick.extra["surrogate_train"] == {"lr": 3e-4, "epochs": 2, "batch_size": 32, "max_length": 64}
    smoke = build_config("adversarial", "smoke", overrides={"extra": {"surrogate_train": {"lr": 3e-4}}})
    assert smoke.extra["surrogate_train"] == {"lr": 3e-4, "epochs": 1, "batch_size": 32, "max_length": 48}  # preset's


def test_adversarial_smoke_run_end_to_end(adv_run):
    records = [json.loads(line) for line in (adv_run / "results.jsonl").read_text().splitlines()]
    assert len(records) == 12
    for r in records:
        m = r["metrics"]
        for k in ("task_accuracy", "adv_accuracy", "advglue_accuracy"):
            assert 0 <= m[k] <= 1
        assert any(k.startswith("adv_accuracy/") for k in m)
    summary = json.loads((adv_run / "summary.json").read_text())
    assert (
        summary["trust_metric"] == "adv_accuracy"
        and summary["wts_trust"]["no_tft"]["significant"] is not None
    )


def test_the_generated_set_is_built_once_when_several_stages_ask_at_once(tmp_path, monkeypatch, data_dir):
    """Stages of several seeds start together in parallel workers: one builds the set, the others wait for it."""
    import threading
    import time as _time

    from w2strust.data.sst2 import load_sst2_sentences
    from w2strust.properties import adversarial_data

    first = load_sst2_sentences(data_dir)[0]

    calls = []

    def fake_generate(data_dir, spec, folder, device):
        calls.append(spec["attack_seed"])
        _time.sleep(0.5)  # long enough for the other callers to arrive while it runs
        folder.mkdir(parents=True, exist_ok=True)
        row = {"text": first["text"], "text_adv": "b", "label": first["label"], "method": "charbug", "task": "sst2",
               "source": 0,
               "words_changed": 1, "status": "success"}
        (folder / "triplets.jsonl").write_text(json.dumps(row) + "\n")
        (folder / "stats.json").write_text("{}")

    monkeypatch.setattr(adversarial_data, "_generate", fake_generate)
    monkeypatch.setattr(adversarial_data, "cache_root", lambda: tmp_path)
    settings = {k: 0 for k in ("surrogate", "surrogate_train", "n_surrogate", "n_attack", "methods", "max_frac",
                               "max_words", "char_candidates", "neighbour_model", "neighbours", "min_similarity",
                               "attack_seed")}
    settings.update(surrogate="minilm-l3", neighbour_model="minilm-l3")  # named in the set's built_from.json
    out = []
    threads = [threading.Thread(target=lambda: out.append(adversarial_data.generated_sst2(data_dir, settings)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [0] and len(out) == 3 and all(len(ds) == 1 for ds, _ in out)


def test_an_interrupted_build_of_the_set_resumes_where_it_stopped_and_gives_the_same_set(tmp_path, monkeypatch,
                                                                                          data_dir, capsys):
    """The quick set takes hours on a CPU: a build killed after its first chunk keeps the surrogate and that chunk,
    and the next build takes both instead of redoing them, ending with the set an uninterrupted build gives. Then the
    unfinished-build folders of a now complete set go, those of other settings stay and are named with their size."""
    from w2strust.properties import adversarial_data
    from w2strust.properties.adversarial import settings

    s = settings(build_config("adversarial", "smoke", overrides={"data": {"data_dir": data_dir}}))
    monkeypatch.setattr(adversarial_data, "ATTACK_CHUNK", 32)  # the smoke set's 80 sentences in 3 chunks
    monkeypatch.setattr(adversarial_data, "cache_root", lambda: tmp_path / "whole")
    whole, _ = adversarial_data.generated_sst2(data_dir, s, "cpu", "fp32")

    monkeypatch.setattr(adversarial_data, "cache_root", lambda: tmp_path / "killed")
    real_save = adversarial_data._Progress.save

    def save_then_die(self, lo, results):
        real_save(self, lo, results)
        raise RuntimeError("killed")

    monkeypatch.setattr(adversarial_data._Progress, "save", save_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        adversarial_data.generated_sst2(data_dir, s, "cpu", "fp32")
    [partial] = (tmp_path / "killed" / "data").glob(".adv-sst2-*.partial-c32")
    assert sorted(p.name for p in partial.iterdir()) == ["chunk-000000.jsonl", "surrogate.pt"]

    monkeypatch.setattr(adversarial_data._Progress, "save", real_save)

    def no_training(*a, **k):
        raise AssertionError("the surrogate was trained again")

    monkeypatch.setattr(adversarial_data, "train_classifier", no_training)
    # leftovers of other builds: the same set's at another chunk size (unusable), and another settings' (resumable)
    same_set_other_chunks = partial.parent / partial.name.replace("partial-c32", "partial-c512")
    other_settings = partial.parent / ".adv-sst2-0000000000000000.partial-c32"
    for leftover in (same_set_other_chunks, other_settings):
        leftover.mkdir()
        (leftover / "surrogate.pt").write_bytes(b"0" * 2**20)
    resumed, stats = adversarial_data.generated_sst2(data_dir, s, "cpu", "fp32")
    assert stats["resumed_sentences"] == 32 and not partial.exists()
    assert resumed.to_list() == whole.to_list()
    assert not same_set_other_chunks.exists() and other_settings.exists()
    assert "1 unfinished build(s) of other settings keep 1 MB" in capsys.readouterr().err


def test_a_sentence_sst2_holds_twice_stays_in_one_part_of_the_generated_set(monkeypatch, data_dir):
    """SST-2 repeats some sentences (7 of the 5,420 the quick preset attacks): the generated set has one row per
    SST-2 row, and until generator version 5 it was split by that row, so a test sentence could be a training one."""
    from datasets import Dataset

    from w2strust.properties import adversarial

    n = 60
    texts = [f"sentence {i % 20} is fine" for i in range(n)]  # every text three times, under three sources
    rows = Dataset.from_dict({"text": texts, "text_adv": [t.replace("fine", "f1ne") for t in texts],
                              "label": [i % 2 for i in range(n)], "method": ["charbug"] * n, "task": ["sst2"] * n,
                              "source": list(range(n)), "words_changed": [1] * n, "status": ["success"] * n})
    stats = {"triplets": n, "attacked": n, "surrogate": "mpnet-base", "per_method": {}}
    monkeypatch.setattr(adversarial, "generated_sst2", lambda *a, **k: (rows, stats))
    cfg = build_config("adversarial", "smoke", overrides={"data": {"data_dir": data_dir}})
    splits = adversarial.AdversarialRobustness().load_splits(cfg, seed=0)
    parts = [set(d["text"]) for d in (splits.weak, splits.wts, splits.test)]
    assert not (parts[0] & parts[2]) and not (parts[1] & parts[2]) and not (parts[0] & parts[1])
    assert sum(len(d) for d in (splits.weak, splits.wts, splits.test)) == n  # every row is in a part
    assert adversarial.AdversarialRobustness.key_extra["split"] == "by clean text"  # in every stage key


def test_a_cached_set_built_from_other_sst2_data_is_not_taken_for_this_data(tmp_path, monkeypatch, data_dir):
    """The set's folder is keyed by its settings only: after the SST-2 sentence file changed (every stage key changed
    with its fingerprint, so the models retrain) the set of the old file was reused as it was, its triplets naming
    sentences the data no longer holds. Now that fails in one line naming the folder to delete; and a saved chunk of
    attacks whose sentences are not the ones at its place is attacked again, not resumed."""
    from w2strust.data.sst2 import load_sst2_sentences
    from w2strust.properties import adversarial_data

    sentences = load_sst2_sentences(data_dir)
    settings = {k: 0 for k in ("surrogate", "surrogate_train", "n_surrogate", "n_attack", "methods", "max_frac",
                               "max_words", "char_candidates", "neighbour_model", "neighbours", "min_similarity",
                               "attack_seed")}
    settings.update(surrogate="minilm-l3", neighbour_model="minilm-l3")  # named in the set's built_from.json
    monkeypatch.setattr(adversarial_data, "cache_root", lambda: tmp_path)

    def fake_generate(rows):
        def generate(data_dir, spec, folder, device):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "triplets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            (folder / "stats.json").write_text("{}")
        return generate

    def row(i, text=None):
        return {"text": text or sentences[i]["text"], "text_adv": "x", "label": sentences[i]["label"],
                "method": "charbug", "task": "sst2", "source": i, "words_changed": 1, "status": "success"}

    monkeypatch.setattr(adversarial_data, "_generate", fake_generate([row(3), row(5, "an older copy's sentence")]))
    with pytest.raises(W2SError, match="another copy of the SST-2 sentences.*delete that folder"):
        adversarial_data.generated_sst2(data_dir, settings)
    # the same set from this data is taken as it is
    monkeypatch.setattr(adversarial_data, "_generate", fake_generate([row(3), row(5)]))
    ds, _ = adversarial_data.generated_sst2(data_dir, {**settings, "attack_seed": 1})
    assert list(ds["source"]) == [3, 5]

    class Store:  # a chunk saved for other sentences, then the next chunk's own
        def __init__(self):
            self.saved = {0: [adversarial_data.attacks.AttackResult("old text", 1, "charbug", "skipped")]}

        def load(self, lo):
            return self.saved.get(lo)

        def save(self, lo, results):
            self.saved[lo] = results

    store = Store()
    out = run_attacks(["a good movie", "bad"], [1, 0], toy_score, {"charbug": char_candidates}, 0, chunk=1,
                      progress=False, store=store)
    assert [r.text for r in out] == ["a good movie", "bad"]


def test_a_cached_set_built_from_another_polarity_file_or_model_is_not_reused(tmp_path, monkeypatch, data_dir):
    """wordsub's word polarities come from GLUE SST-2's phrases, and the surrogate may be a local folder: neither is
    in the set folder's key, so a set made from an older file or model was reused. The set records them now."""
    from w2strust.properties import adversarial_data

    settings = {k: 0 for k in ("surrogate_train", "n_surrogate", "n_attack", "methods", "max_frac", "max_words",
                               "char_candidates", "neighbours", "min_similarity", "attack_seed")}
    settings.update(surrogate="minilm-l3", neighbour_model="minilm-l3")
    monkeypatch.setattr(adversarial_data, "cache_root", lambda: tmp_path)
    row = {"text": adversarial_data.load_sst2_sentences(data_dir)[3]["text"], "text_adv": "x", "method": "charbug",
           "label": adversarial_data.load_sst2_sentences(data_dir)[3]["label"], "task": "sst2", "source": 3,
           "words_changed": 1, "status": "success"}

    def generate(data_dir, spec, folder, device):  # a set made before sets recorded what they were built from
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "triplets.jsonl").write_text(json.dumps(row) + "\n")
        (folder / "stats.json").write_text("{}")

    monkeypatch.setattr(adversarial_data, "_generate", generate)
    adversarial_data.generated_sst2(data_dir, settings)
    recorded = json.loads(next(tmp_path.glob("data/adv-sst2-*/built_from.json")).read_text())
    assert recorded["surrogate"] == "minilm-l3" and "sst2/glue/train.tsv" in recorded["polarity"]
    adversarial_data.generated_sst2(data_dir, settings)  # the same data and models: reused
    monkeypatch.setattr(adversarial_data, "fingerprint", lambda files, d: {"sst2/glue/train.tsv": {"sha256": "new"}})
    with pytest.raises(W2SError, match="built from another polarity than this run's.*delete that folder"):
        adversarial_data.generated_sst2(data_dir, settings)


def test_a_set_built_on_an_accelerator_has_its_own_folder(monkeypatch):
    """Which attacks succeed depends on the surrogate's device: a GPU-built set must not serve CPU stages (and the
    CPU builds keep their folder names, so cached sets and published results stand)."""
    from w2strust.io import content_key
    from w2strust.properties import adversarial_data as ad

    spec = {"surrogate": "minilm-l3", "precision": "fp32"}
    cpu = ad.set_folder(spec, "cpu")
    assert cpu.name == f"adv-sst2-{content_key({'spec': spec, 'version': ad.GENERATOR_VERSION})}"
    monkeypatch.setattr(ad, "resolve_device", lambda device: torch.device("cuda"))
    assert ad.set_folder(spec, "cuda") != cpu
