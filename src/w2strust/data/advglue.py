"""Adversarial (clean, adversarial, label) triplets and the AdvGLUE dev set.

Three sources, one schema (``text``, ``text_adv``, ``label``, ``method``, ``task``):
- ``load_advglue_plus_plus``: AdvGLUE++ (DecodingTrust, Hub dataset ``AI-Secure/DecodingTrust``,
  ``adv-glue-plus-plus/data/<task>.jsonl``), all six GLUE tasks, online only.
- the offline stand-in, SST-2 sentences attacked against a surrogate model, is built by the adversarial
  property (``properties/adversarial_data.py``): it trains a model, which a loader does not.
- ``load_advglue_dev``: the original AdvGLUE dev set (adversarial only, human-validated), an external
  test that nobody here generated (``advglue_accuracy``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datasets import Dataset

from ..errors import W2SError
from .download import locate, reading

ADVGLUE_URL = "https://adversarialglue.github.io/dataset/dev.json"
ADVGLUE_PP_REPO = "AI-Secure/DecodingTrust"
TASKS = ("sst2", "qqp", "mnli", "mnli-mm", "qnli", "rte")
TASK_FIELDS = {"sst2": ("sentence",), "qqp": ("question1", "question2"), "mnli": ("premise", "hypothesis"),
               "mnli-mm": ("premise", "hypothesis"), "qnli": ("question", "sentence"),
               "rte": ("sentence1", "sentence2")}
TASK_LABELS = {"sst2": 2, "qqp": 2, "mnli": 3, "mnli-mm": 3, "qnli": 2, "rte": 2}


def compose(task: str, row: dict[str, Any], prefix: str = "") -> str:
    """One input string per example; sentence pairs become ``field: a field: b`` (model-agnostic)."""
    fields = TASK_FIELDS[task]
    values = [str(row.get(prefix + f) or row[f]).strip() for f in fields]
    if len(fields) == 1:
        return values[0]
    return " ".join(f"{f}: {v}" for f, v in zip(fields, values, strict=True))


def _check_tasks(tasks: list[str]) -> None:
    bad = [t for t in tasks if t not in TASK_FIELDS]
    if bad or not tasks:
        raise W2SError(f"unknown AdvGLUE task(s) {bad or '(none)'}; choose from {', '.join(TASKS)}")


def load_advglue_dev(data_dir: str | None, tasks: list[str]) -> Dataset:
    """AdvGLUE dev (``advglue/advglue_dev.json``): text, label, task for the given tasks."""
    _check_tasks(tasks)
    path = locate("advglue/advglue_dev.json", data_dir, ADVGLUE_URL)
    with reading(path, "AdvGLUE dev.json"):
        dev = json.loads(path.read_text(encoding="utf-8"))
        rows = [(compose(t, r), int(r["label"]), t) for t in tasks for r in dev.get(t, [])]
    if not rows:
        raise W2SError(f"the AdvGLUE dev file has no items for tasks {tasks}")
    texts, labels, task_col = map(list, zip(*rows, strict=True))
    return Dataset.from_dict({"text": texts, "label": labels, "task": task_col})


def load_advglue_plus_plus(tasks: list[str]) -> Dataset:
    """AdvGLUE++ from the Hub: the attacked text, its clean ``original_<field>`` and the attack ``method``."""
    _check_tasks(tasks)
    from huggingface_hub import hf_hub_download

    rows = []
    for task in tasks:
        try:
            path = hf_hub_download(ADVGLUE_PP_REPO, f"adv-glue-plus-plus/data/{task}.jsonl",
                                   repo_type="dataset")
        except Exception as e:  # noqa: BLE001 - any Hub failure means "offline" to the user
            raise W2SError(f"could not download AdvGLUE++ ({ADVGLUE_PP_REPO}, task {task}) from the Hugging "
                           f"Face Hub ({type(e).__name__}). Offline? Use extra.source=generate to build "
                           f"adversarial SST-2 locally.") from None
        rows += parse_advglue_plus_plus(Path(path).read_text(encoding="utf-8"), task)
    return Dataset.from_list(rows)


def parse_advglue_plus_plus(jsonl: str, task: str) -> list[dict[str, Any]]:
    out = []
    for line in jsonl.splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        out.append({"text": compose(task, r, prefix="original_"), "text_adv": compose(task, r),
                    "label": int(r["label"]), "method": str(r.get("method", "unknown")), "task": task})
    return out
