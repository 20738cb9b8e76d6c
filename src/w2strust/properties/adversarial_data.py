"""The offline stand-in for AdvGLUE++: (clean, adversarial, label) triplets built from SST-2 sentences.

Clean SST-2 sentences are attacked with ``attacks.py`` against a surrogate classifier fine-tuned on other
SST-2 sentences. Every attacked sentence is kept with its ``status``: ``success`` (the edits flip the surrogate),
``failed`` (the edit budget ran out; the text holds the edits that lowered the true label's score) or ``skipped``
(the surrogate was already wrong; the text is left clean). The property trains on successful triplets only and
tests on every sentence of the test partition, so the test set is not selected by the surrogate. The default
surrogate (and the model whose embeddings give word substitutes) is neither the weak nor the strong model
(docs/adversarial.md). The set is built once per distinct settings and cached under
``<cache>/data/adv-sst2-<key>/`` (``triplets.jsonl``, ``stats.json`` written last). Building it takes hours on
a CPU, so the trained surrogate and every finished chunk of attacks are kept beside it until it is complete: a
killed build resumes where it stopped (``_Progress``).
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from filelock import FileLock

from .. import models
from ..config.schema import TrainConfig
from ..data.fingerprint import fingerprint
from ..data.sst2 import load_sst2_phrases, load_sst2_sentences
from ..errors import W2SError
from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text, content_key
from ..models import cache_root
from ..training.classifier import train_classifier
from ..training.device import resolve_device
from . import attacks
from .base import TrustProperty

GENERATOR_VERSION = 6  # bump when a change to the attacks invalidates cached generated sets (and stage keys);
# 4: built with BUILD_THREADS CPU threads, not the asking stage's count
# 5: charbug leaves stop words and negations alone; wordsub neither replaces nor uses negations and scalar words
# 6: wordsub refuses WordNet's opposites (big -> small, thin -> thick; attacks.opposite)
ATTACK_CHUNK = 512  # sentences attacked together (their queries share the surrogate's batches); also the unit of resume
# CPU threads the set is built with, whatever the asking stage's own count: PyTorch's reductions (and so the surrogate
# and its attacks) depend on it, and one cached set serves stages of every thread count, so a set built from an empty
# cache must not depend on whether `--threads 1` or `--threads 2` asked first
BUILD_THREADS = 2
PARTIAL = ".partial-c"  # an unfinished build's folder: ".<set folder>.partial-c<chunk size>" (_Progress, tidy_partials)


class _Progress:
    """An unfinished build's work, in a hidden folder beside the set's: the trained surrogate's weights and each
    finished chunk of attacks (``chunk-<first sentence>.jsonl``, written atomically; the folder is named by the chunk
    size, which decides where chunks start). Removed once the set is written."""

    def __init__(self, folder: Path):
        self.dir = folder.parent / f".{folder.name}{PARTIAL}{ATTACK_CHUNK}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.surrogate = self.dir / "surrogate.pt"
        self.resumed = 0

    def _chunk(self, lo: int) -> Path:
        return self.dir / f"chunk-{lo:06d}.jsonl"

    def load(self, lo: int) -> list[attacks.AttackResult] | None:
        try:
            rows = [attacks.AttackResult(**json.loads(line)) for line in self._chunk(lo).read_text().splitlines()]
        except (OSError, ValueError, TypeError):  # missing or unreadable: attack that chunk again
            return None
        self.resumed += len(rows)
        return rows

    def save(self, lo: int, results: list[attacks.AttackResult]) -> None:
        atomic_write_text(self._chunk(lo), "".join(json.dumps(r.to_dict()) + "\n" for r in results))

    def save_surrogate(self, model) -> None:
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        atomic_write_bytes(self.surrogate, buf.getvalue())

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def tidy_partials(data: Path) -> list[Path]:
    """After a set is written: remove the unfinished-build folders whose set is complete by now (a build of another
    chunk size, or one killed after writing its set), and name those of other settings with their size, which stay:
    they resume if those settings are built again, and only the user knows whether they will be. Returns those."""
    others = []
    for partial in sorted(data.glob(f".adv-sst2-*{PARTIAL}*")):
        if (data / partial.name[1:].rsplit(PARTIAL, 1)[0] / "stats.json").exists():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            others.append(partial)
    if others:
        mb = sum(f.stat().st_size for p in others for f in p.rglob("*") if f.is_file()) / 2**20
        print(f"adversarial SST-2: {len(others)} unfinished build(s) of other settings keep {mb:.0f} MB in {data} "
              f"({', '.join(p.name for p in others)}); they resume if those settings are built again, "
              f"otherwise delete them (rm -r {data}/.adv-sst2-*.partial-*, when no build is running)", file=sys.stderr)
    return others


def sentiment_polarity(data_dir: str | None) -> dict[str, int]:
    """word -> 0/1 from SST-2's single-word phrases (GLUE SST-2 holds only polar phrases)."""
    ds = load_sst2_phrases(data_dir)
    return {t.strip().lower(): int(y) for t, y in zip(ds["text"], ds["label"], strict=True)
            if len(t.split()) == 1}


def set_folder(spec: dict[str, Any], device: str) -> Path:
    """The cache folder of the set of ``spec``. The surrogate's training and scores, so which attacks succeed,
    depend on the device kind: a set built on an accelerator has its own folder (a CPU stage must not take a
    GPU-built set for the one its key stands for); a CPU build's folder is named as before the kind was added."""
    kind = resolve_device(device).type
    key = {"spec": spec, "version": GENERATOR_VERSION, **({"device": kind} if kind != "cpu" else {})}
    return cache_root() / "data" / f"adv-sst2-{content_key(key)}"


def generated_sst2(data_dir: str | None, settings: dict[str, Any],
                   device: str = "auto", precision: str = "fp32") -> tuple[Dataset, dict]:
    """The generated triplets and their statistics, built once per distinct ``settings`` and cached.
    ``precision`` (resolved) is the surrogate's training and scoring precision."""
    spec = {k: settings[k] for k in ("surrogate", "surrogate_train", "n_surrogate", "n_attack", "methods",
                                      "max_frac", "max_words", "char_candidates", "neighbour_model",
                                      "neighbours", "min_similarity", "attack_seed")}
    spec["precision"] = precision
    folder = set_folder(spec, device)
    if not (folder / "stats.json").exists():  # stats.json is written last: its presence means complete
        folder.parent.mkdir(parents=True, exist_ok=True)
        # one generator at a time: stages of several seeds start together in parallel workers, and each would
        # otherwise train its own surrogate and attack the same sentences (measured: two at once, same result)
        with FileLock(str(folder.parent / f".{folder.name}.lock")):
            if not (folder / "stats.json").exists():
                threads = torch.get_num_threads()
                torch.set_num_threads(BUILD_THREADS)
                try:
                    _generate(data_dir, spec, folder, device)
                finally:
                    torch.set_num_threads(threads)
    stats = json.loads((folder / "stats.json").read_text())
    rows = [json.loads(line) for line in (folder / "triplets.jsonl").read_text().splitlines() if line.strip()]
    check_sources(rows, load_sst2_sentences(data_dir), folder)
    check_built_from(folder, built_from(data_dir, spec))
    if not any(r["status"] == "success" for r in rows):
        raise W2SError(f"the attack produced no adversarial example ({stats}); "
                       f"raise extra.n_attack or the edit budget")
    return Dataset.from_list(rows), stats


BUILT_FROM = "built_from.json"


def built_from(data_dir: str | None, spec: dict[str, Any]) -> dict[str, Any]:
    """What a set depends on beyond its settings (its folder's key) and its sentences (``check_sources``): the word
    polarities of wordsub (GLUE SST-2's phrases) and the models' identities (a local folder's content hash, a Hub
    model's commit), so a set of a changed file or model is not reused under the old one's folder."""
    return {"polarity": fingerprint([("sst2/glue/train.tsv", None, True)], data_dir),
            "surrogate": models.stage_id(spec["surrogate"]),
            "neighbour_model": models.stage_id(spec["neighbour_model"])}


def check_built_from(folder: Path, now: dict[str, Any]) -> None:
    """Refuse a cached set built from other polarity data or models than ``now``. A set records ``now`` at its first
    use, right after its build (``generated_sst2``); a set built before sets recorded this records it then too (it
    was checked against its sentences above)."""
    path = folder / BUILT_FROM
    if not path.exists():
        atomic_write_json(path, now)
        return
    then = json.loads(path.read_text())
    changed = [k for k in now if then.get(k) != now[k]]
    if changed:
        raise W2SError(f"the cached adversarial set {folder} was built from another {' and '.join(changed)} than this "
                       f"run's (the data file or model changed since); delete that folder to build the set from "
                       f"these")


def check_sources(rows: list[dict[str, Any]], sentences: Dataset, folder: Path) -> None:
    """The set's folder is keyed by its settings, not by the data: a set built from another copy of the SST-2
    sentences (a changed file, whose stage keys did change) must not be taken for this one's."""
    texts, labels = sentences["text"], sentences["label"]
    for r in rows:
        i = int(r["source"])
        if not (0 <= i < len(texts) and texts[i] == r["text"] and labels[i] == int(r["label"])):
            raise W2SError(f"the cached adversarial set {folder} was built from another copy of the SST-2 sentences "
                           f"(its row for sentence {i} does not match the data read now); delete that folder (and "
                           f"its hidden .partial folder, if any) to build the set from this data")


def _generate(data_dir: str | None, spec: dict[str, Any], folder: Path, device: str) -> None:
    started = time.time()
    sentences = load_sst2_sentences(data_dir)
    need = spec["n_surrogate"] + spec["n_attack"]
    if need > len(sentences):
        raise W2SError(f"n_surrogate + n_attack = {need} but SST-2 has only {len(sentences)} sentences")
    # Disjoint by construction: the surrogate never sees a sentence that is attacked (hence never D_T).
    order = np.random.default_rng(spec["attack_seed"]).permutation(len(sentences))
    sur_ds = sentences.select(order[:spec["n_surrogate"]])
    pool = sentences.select(order[spec["n_surrogate"]:need])
    progress = _Progress(folder)
    resuming = progress.surrogate.exists()  # an interrupted build: its surrogate, not a retrained one
    print(f"adversarial SST-2: {'resuming an interrupted build from ' + str(progress.dir) + ': ' if resuming else ''}"
          f"{'the trained' if resuming else 'training'} surrogate {spec['surrogate']} ({len(sur_ds)} sentences), "
          f"then attacking {len(pool)} others with {', '.join(spec['methods'])} (cached in {folder})",
          file=sys.stderr)
    torch.manual_seed(spec["attack_seed"])
    model, tok = models.build_classifier(spec["surrogate"], 2)
    dev = resolve_device(device)  # the run's device setting
    tcfg = TrainConfig(**spec["surrogate_train"])
    if resuming:
        model.load_state_dict(torch.load(progress.surrogate, map_location="cpu"))
        model.to(dev)
    else:
        targets = np.eye(2, dtype=np.float32)[np.asarray(sur_ds["label"])]
        train_classifier(model, tok, sur_ds, targets, tcfg, TrustProperty(), 0.0, spec["attack_seed"], dev,
                         desc=f"surrogate {spec['surrogate']}", precision=spec["precision"])
        progress.save_surrogate(model)
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
                                  spec["attack_seed"], spec["max_frac"], spec["max_words"], chunk=ATTACK_CHUNK,
                                  store=progress)
    triplets = [{"text": r.text, "text_adv": r.adv or r.text, "label": r.label, "method": r.method, "task": "sst2",
                 "source": int(order[spec["n_surrogate"] + i]), "words_changed": len(r.changed), "status": r.status}
                for i, r in enumerate(results)]
    n_success = sum(t["status"] == "success" for t in triplets)
    stats: dict[str, Any] = {"surrogate": spec["surrogate"], "n_surrogate_train": len(sur_ds),
                             "attacked": len(pool), "triplets": n_success,
                             # on the attacked pool, before any attack (skipped = already wrong)
                             "surrogate_clean_accuracy": float(np.mean([r.status != "skipped"
                                                                        for r in results])),
                             "per_method": {}, "seconds": round(time.time() - started, 1),
                             "cpu_threads": torch.get_num_threads(),
                             "resumed_sentences": progress.resumed}  # attacked by an earlier, interrupted build
    for m in methods:
        rs = [r for r in results if r.method == m and r.status != "skipped"]
        ok = [r for r in rs if r.status == "success"]
        stats["per_method"][m] = {
            "attacked": len(rs), "success": len(ok), "success_rate": len(ok) / max(1, len(rs)),
            "mean_words_changed": float(np.mean([len(r.changed) for r in ok])) if ok else 0.0,
            "mean_queries": float(np.mean([r.queries for r in rs])) if rs else 0.0}
    stats["success_rate"] = n_success / max(1, sum(v["attacked"] for v in stats["per_method"].values()))
    atomic_write_text(folder / "triplets.jsonl", "".join(json.dumps(t) + "\n" for t in triplets))
    atomic_write_json(folder / "stats.json", stats)
    progress.remove()
    tidy_partials(folder.parent)
    print(f"adversarial SST-2: {n_success} successful triplets of {len(triplets)} attacked sentences, success rate "
          + ", ".join(f"{m} {v['success_rate']:.1%}" for m, v in stats["per_method"].items())
          + f" ({stats['seconds']:.0f}s)", file=sys.stderr)
