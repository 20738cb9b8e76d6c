"""Adversarial (clean, adversarial, label) triplets and the AdvGLUE dev set.

Three sources, one schema (``text``, ``text_adv``, ``label``, ``method``, ``task``):
- ``load_advglue_plus_plus``: AdvGLUE++ (DecodingTrust, Hub dataset ``AI-Secure/DecodingTrust``,
  ``adv-glue-plus-plus/data/<task>.jsonl``), all six GLUE tasks, online only.
- ``generated_sst2``: the offline stand-in: clean SST-2 sentences attacked with ``w2strust.attacks``
  against a surrogate classifier fine-tuned on other SST-2 sentences; only the perturbations that
  flip the surrogate are kept. Cached under ``<cache>/data/adv-sst2-<key>/``, keyed by the settings.
- ``load_advglue_dev``: the original AdvGLUE dev set (adversarial only, human-validated), an external
  test that nobody here generated (``advglue_accuracy``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from ..errors import W2SError
from ..io import atomic_write_json, atomic_write_text, content_key
from .download import locate, reading
from .sst2 import load_sst2_phrases, load_sst2_sentences

ADVGLUE_URL = "https://adversarialglue.github.io/dataset/dev.json"
ADVGLUE_PP_REPO = "AI-Secure/DecodingTrust"
TASKS = ("sst2", "qqp", "mnli", "mnli-mm", "qnli", "rte")
TASK_FIELDS = {"sst2": ("sentence",), "qqp": ("question1", "question2"), "mnli": ("premise", "hypothesis"),
               "mnli-mm": ("premise", "hypothesis"), "qnli": ("question", "sentence"),
               "rte": ("sentence1", "sentence2")}
TASK_LABELS = {"sst2": 2, "qqp": 2, "mnli": 3, "mnli-mm": 3, "qnli": 2, "rte": 2}
GENERATOR_VERSION = 2  # bump when a change to the attacks invalidates cached generated sets


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


# ---------------------------------------------------------------- the offline generator
def sentiment_polarity(data_dir: str | None) -> dict[str, int]:
    """word -> 0/1 from SST-2's single-word phrases (GLUE SST-2 holds only polar phrases)."""
    ds = load_sst2_phrases(data_dir)
    return {t.strip().lower(): int(y) for t, y in zip(ds["text"], ds["label"], strict=True)
            if len(t.split()) == 1}


def generated_sst2(data_dir: str | None, settings: dict[str, Any],
                   device: str = "auto", precision: str = "fp32") -> tuple[Dataset, dict]:
    """The generated triplets and their statistics, built once per distinct ``settings`` and cached.
    ``precision`` (resolved) is the surrogate's training and scoring precision."""
    from ..models import cache_root

    spec = {k: settings[k] for k in ("surrogate", "surrogate_train", "n_surrogate", "n_attack", "methods",
                                      "max_frac", "max_words", "char_candidates", "neighbour_model",
                                      "neighbours", "min_similarity", "attack_seed")}
    spec["precision"] = precision
    folder = cache_root() / "data" / f"adv-sst2-{content_key({'spec': spec, 'version': GENERATOR_VERSION})}"
    if not (folder / "stats.json").exists():  # stats.json is written last: its presence means complete
        _generate(data_dir, spec, folder, device)
    stats = json.loads((folder / "stats.json").read_text())
    rows = [json.loads(line) for line in (folder / "triplets.jsonl").read_text().splitlines() if line.strip()]
    if not rows:
        raise W2SError(f"the attack produced no adversarial example ({stats}); "
                       f"raise extra.n_attack or the edit budget")
    return Dataset.from_list(rows), stats


def _generate(data_dir: str | None, spec: dict[str, Any], folder: Path, device: str) -> None:
    import time

    import torch

    from .. import attacks, models
    from ..config import TrainConfig
    from ..properties.base import TrustProperty
    from ..train import resolve_device, train_classifier

    started = time.time()
    sentences = load_sst2_sentences(data_dir)
    need = spec["n_surrogate"] + spec["n_attack"]
    if need > len(sentences):
        raise W2SError(f"n_surrogate + n_attack = {need} but SST-2 has only {len(sentences)} sentences")
    # Disjoint by construction: the surrogate never sees a sentence that is attacked (hence never D_T).
    order = np.random.default_rng(spec["attack_seed"]).permutation(len(sentences))
    sur_ds = sentences.select(order[:spec["n_surrogate"]])
    pool = sentences.select(order[spec["n_surrogate"]:need])
    print(f"adversarial SST-2: training surrogate {spec['surrogate']} on {len(sur_ds)} sentences, "
          f"then attacking {len(pool)} others with {', '.join(spec['methods'])} (cached in {folder})",
          file=sys.stderr)
    torch.manual_seed(spec["attack_seed"])
    model, tok = models.build_classifier(spec["surrogate"], 2)
    dev = resolve_device(device)
    tcfg = TrainConfig(**spec["surrogate_train"])
    targets = np.eye(2, dtype=np.float32)[np.asarray(sur_ds["label"])]
    train_classifier(model, tok, sur_ds, targets, tcfg, TrustProperty(), 0.0, spec["attack_seed"], dev,
                     desc=f"surrogate {spec['surrogate']}", precision=spec["precision"])
    score = attacks.model_scorer(model, tok, tcfg.max_length, precision=spec["precision"])
    methods: dict[str, attacks.Candidates] = {}
    for m in spec["methods"]:
        if m == "charbug":
            methods[m] = lambda w, rng, k=spec["char_candidates"]: attacks.char_candidates(w, rng, k)
        elif m == "wordsub":
            methods[m] = attacks.EmbeddingNeighbours.from_model(
                spec["neighbour_model"], polarity=sentiment_polarity(data_dir), k=spec["neighbours"],
                min_similarity=spec["min_similarity"])
        else:
            raise W2SError(f"unknown attack method '{m}'; choose from {', '.join(attacks.METHODS)}")
    results = attacks.run_attacks(list(pool["text"]), list(pool["label"]), score, methods,
                                  spec["attack_seed"], spec["max_frac"], spec["max_words"])
    triplets = [{"text": r.text, "text_adv": r.adv, "label": r.label, "method": r.method, "task": "sst2",
                 "source": int(order[spec["n_surrogate"] + i]), "words_changed": len(r.changed)}
                for i, r in enumerate(results) if r.status == "success"]
    stats: dict[str, Any] = {"surrogate": spec["surrogate"], "n_surrogate_train": len(sur_ds),
                             "attacked": len(pool), "triplets": len(triplets),
                             # on the attacked pool, before any attack (skipped = already wrong)
                             "surrogate_clean_accuracy": float(np.mean([r.status != "skipped"
                                                                        for r in results])),
                             "per_method": {}, "seconds": round(time.time() - started, 1)}
    for m in methods:
        rs = [r for r in results if r.method == m and r.status != "skipped"]
        ok = [r for r in rs if r.status == "success"]
        stats["per_method"][m] = {
            "attacked": len(rs), "success": len(ok), "success_rate": len(ok) / max(1, len(rs)),
            "mean_words_changed": float(np.mean([len(r.changed) for r in ok])) if ok else 0.0,
            "mean_queries": float(np.mean([r.queries for r in rs])) if rs else 0.0}
    stats["success_rate"] = len(triplets) / max(1, sum(v["attacked"] for v in stats["per_method"].values()))
    atomic_write_text(folder / "triplets.jsonl", "".join(json.dumps(t) + "\n" for t in triplets))
    atomic_write_json(folder / "stats.json", stats)
    print(f"adversarial SST-2: {len(triplets)} triplets, success rate "
          + ", ".join(f"{m} {v['success_rate']:.1%}" for m, v in stats["per_method"].items())
          + f" ({stats['seconds']:.0f}s)", file=sys.stderr)
