import numpy as np

from w2strust.config.build import build_config
from w2strust.data.adult import load_adult
from w2strust.properties import get


def test_adult_loads_all_rows_with_group_and_label(data_dir):
    pool, test = load_adult(data_dir)
    assert len(pool) == 32561 and len(test) == 16281
    assert abs(np.mean(test["label"]) - 3846 / 16281) < 1e-9
    assert sum(pool["group"]) == 21790  # male
    assert "sex Male" in pool[0]["text"] and "income" not in pool[0]["text"]


def test_splits_are_disjoint_and_sized(data_dir):
    cfg = build_config("fairness", "smoke", overrides={"data": {"n_weak": 300, "n_wts": 400, "n_test": 250}})
    prop = get("fairness")
    s = prop.load_splits(cfg, seed=3)
    assert (len(s.weak), len(s.wts), len(s.test)) == (300, 400, 250)
    # D_W and D_WTS come from adult.data, D_T from adult.test; index-level disjointness is checked
    # through a row id made of the text and label (Adult has a few literal duplicate rows, so also
    # check the split itself on indices).
    pool, _ = load_adult(data_dir)
    order = np.random.default_rng(3).permutation(len(pool))
    assert not set(order[:300]) & set(order[300:700])
    assert s.weak["text"] == pool.select(order[:300])["text"]
    # a different seed gives a different split
    s2 = prop.load_splits(cfg, seed=4)
    assert s2.weak["text"] != s.weak["text"]


def test_near_copies_of_an_email_are_one_email():
    """A re-send that differs in white space, or a forward that adds text after the first 200 characters, was held out
    while its twin was trained on (1-2 held-out e-mails per seed of the full preset). Synthetic text only."""
    from w2strust.data.email_corpus import DEDUP_CHARS, _clean

    body = " ".join(f"word{i}" for i in range(80))
    assert len(body) > DEDUP_CHARS
    other = " ".join(f"other{i}" for i in range(80))
    texts = [body, body.replace(" ", "  \n", 5), body + " -- forwarded with a note", other]
    assert _clean(texts) == [body, other]


def test_the_offline_email_pool_is_read_again_when_a_file_is_replaced(tmp_path):
    """The pool was memoised by the data folder's path: a replaced e-mail file (a notebook's second run, whose stage
    keys name the new file) still gave the old e-mails. Counts only: the e-mails are never printed."""
    import os
    import shutil

    from w2strust.data.email_corpus import HAM, RAW, load_enron

    shutil.copytree(os.environ["W2STRUST_DATA"] + "/enron/raw_emails", tmp_path / "enron" / "raw_emails")
    before = len(load_enron(str(tmp_path), 0))
    synthetic = "word " * 60
    (tmp_path / HAM).write_text(f'"text_ham","label"\n"{synthetic}","ham"\n')
    os.utime(tmp_path / RAW)
    assert len(load_enron(str(tmp_path), 0)) < before


def test_sst2_phrases_from_the_hub_lose_glue_s_trailing_space_as_from_a_data_folder(monkeypatch, data_dir):
    # GLUE's phrases end with a space (all 67,349 of the offline copy); the data-folder path strips it. A byte-level
    # tokenizer reads it as a token, and no OOD style sentence has it: from the Hub too it must go.
    import datasets

    from w2strust.data.sst2 import load_sst2_phrases

    local = load_sst2_phrases(data_dir)
    served = datasets.Dataset.from_dict({"sentence": [t + " " for t in local["text"][:50]],
                                         "label": local["label"][:50], "idx": list(range(50))})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: served)
    hub = load_sst2_phrases(None)
    assert hub["text"] == local["text"][:50] and hub["label"] == local["label"][:50]
    assert all(not t.endswith(" ") for t in hub["text"])


def test_a_data_file_replaced_with_the_same_size_and_mtime_is_hashed_again(tmp_path):
    # `cp -p`, `rsync -a` and `tar x` keep a file's size and mtime: a notebook's second run must still see new bytes
    import os

    from w2strust.data.fingerprint import file_hash

    f = tmp_path / "adult.test"
    f.write_text("a,b\n")
    st = f.stat()
    first = file_hash(f)
    (tmp_path / "new").write_text("c,d\n")
    os.replace(tmp_path / "new", f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    assert file_hash(f) != first

