"""Black-box text attacks that build (clean, adversarial, label) triplets offline, AdvGLUE++-style.

Both attacks follow the greedy recipe shared by TextFooler, TextBugger and DeepWordBug:
1. rank the words by importance = how much deleting the word lowers the surrogate's probability
   of the true label (one batched query per sentence);
2. walk the words in that order and replace each with the candidate that lowers the true-label
   probability most, keeping a replacement only when it helps;
3. stop as soon as the prediction flips (success) or the edit budget is spent (failure).
A sentence the surrogate already gets wrong is skipped (nothing to attack).

Methods (each triplet keeps its ``method`` tag, like AdvGLUE++'s ``method`` field):
- ``charbug`` (TextBugger / DeepWordBug-like, character level): inside a word, swap two neighbouring
  letters, delete a letter, or substitute a look-alike (o→0, l→1 …) or a neighbouring key. First
  and last letters stay for swaps/deletions (TextBugger's readability rule); one edit per word; stop words and
  negations are not edited (TextBugger's rule for stop words).
- ``wordsub`` (TextFooler-like, word level): replace a word with one of its nearest neighbours in a
  pretrained model's input-embedding space (cosine ≥ ``min_similarity``). Embedding neighbours
  include antonyms ("good" ~ "bad"), which would change the label, so a polarity guard keeps a
  candidate only if it has the same sentiment polarity (positive / negative / none) as the word,
  read from SST-2's single-word phrases (a labelled sentiment lexicon that ships with the data). Negations and
  scalar words (often ~ rarely, somebody ~ nobody, before ~ after) are neither replaced nor used (``SCALAR_WORDS``),
  and WordNet's opposites (big ~ small, thin ~ thick, accept ~ reject; ``antonyms.txt``) are refused (``opposite``).

The edit budget is a number of words: ``max(1, min(max_words, round(max_frac · n_words)))``.
Candidate sampling is seeded per sentence, so a run is deterministic for a seed.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from typing import Protocol

import numpy as np

from .. import models
from ..training.classifier import TokenCache, predict_texts

Scorer = Callable[[list[str]], np.ndarray]  # texts -> class probabilities (N x C)
Candidates = Callable[[str, np.random.Generator], list[str]]  # word -> replacement candidates

METHODS = ("charbug", "wordsub")

VISUAL = {"a": "@", "b": "8", "e": "3", "g": "9", "i": "1", "l": "1", "o": "0", "s": "$", "t": "7", "z": "2"}
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
KEYBOARD = {c: "".join(r[j] for j in (i - 1, i + 1) if 0 <= j < len(r))
            for r in _ROWS for i, c in enumerate(r)}

STOPWORDS = frozenset("""a an the and or but if of to in on at by for with from as is are was were be
been being it its this that these those he she they we you i me him her them us my your his their our not no
nor so than too very can will would should could do does did has have had what which who whom whose when where
why how all any each both few more most other some such only own same just also there here then once again
's n't""".split())
# Words whose edit can reverse a sentence's meaning while keeping its sentiment words: negations, and the scalar
# words of quantity, frequency, degree, order and direction. Embedding neighbours pair them with their opposites
# (measured in mpnet-base's input embeddings at cosine >= 0.4: often ~ rarely, somebody ~ nobody, everyone ~ nobody,
# before ~ after, up ~ down, last ~ next, partly ~ mostly, somewhat ~ considerably, neither ~ either), and SST-2's
# polarity lexicon does not label them, so the polarity guard lets them through. wordsub neither replaces them nor
# uses them as replacements; charbug leaves the negations alone, like the stop words (TextBugger does not edit stop
# words; "not" -> "mot" or "nit" reads as another word). Generator version 5.
NEGATIONS = frozenset("""not no nor never none nobody nothing nowhere neither without cannot cant can't won't don't
doesn't didn't isn't wasn't aren't weren't hardly barely scarcely seldom rarely lack lacks lacking lacked""".split())
SCALAR_WORDS = NEGATIONS | frozenset("""every everyone everybody everything everywhere some someone somebody something
somewhere any anyone anybody anything anywhere all each both either few fewer many much more most less least several
lots lot plenty enough little numerous countless always often usually sometimes occasionally frequently regularly
routinely constantly typically commonly normally generally invariably periodically ever sometime very too quite
rather somewhat slightly mildly fairly relatively reasonably considerably significantly substantially highly
extremely utterly totally completely entirely fully wholly altogether absolutely partly partially largely mainly
mostly primarily predominantly principally chiefly solely exclusively purely merely only just even still almost
nearly virtually practically roughly approximately before after first last next previous earlier later early late
up down high higher low lower top bottom over under above below inside outside in out on off""".split())
CHARBUG_KEEPS = STOPWORDS | NEGATIONS  # words charbug does not edit
WORDSUB_KEEPS = STOPWORDS | SCALAR_WORDS  # words wordsub neither replaces nor uses


@dataclass
class AttackResult:
    text: str
    label: int
    method: str
    status: str  # "success" | "failed" | "skipped" (the surrogate was already wrong)
    adv: str | None = None  # the attacked text: flips the surrogate (success) or does not (failed); None if skipped
    changed: list[int] = field(default_factory=list)  # positions of the edited words
    queries: int = 0  # surrogate queries spent

    def to_dict(self) -> dict:
        return asdict(self)


def edit_budget(n_words: int, max_frac: float, max_words: int) -> int:
    return max(1, min(max_words, int(round(max_frac * n_words))))


def char_candidates(word: str, rng: np.random.Generator, k: int = 12) -> list[str]:
    """Up to ``k`` one-edit character perturbations of ``word`` (letters-only words of 3+ characters)."""
    if len(word) < 3 or not word.isalpha() or word.lower() in CHARBUG_KEEPS:
        return []
    out: set[str] = set()
    for i in range(1, len(word) - 2):  # swap inner neighbours (first and last letter stay)
        if word[i] != word[i + 1]:
            out.add(word[:i] + word[i + 1] + word[i] + word[i + 2:])
    for i in range(1, len(word) - 1):  # delete an inner letter
        out.add(word[:i] + word[i + 1:])
    for i, c in enumerate(word):  # look-alike or neighbouring-key substitution
        for sub in VISUAL.get(c.lower(), "") + KEYBOARD.get(c.lower(), ""):
            out.add(word[:i] + sub + word[i + 1:])
    out.discard(word)
    cands = sorted(out)
    if len(cands) > k:
        cands = [cands[j] for j in sorted(rng.choice(len(cands), k, replace=False))]
    return cands


NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "anti")


def _negation_pair(a: str, b: str) -> bool:
    """predictable / unpredictable: close in embedding space, opposite in meaning."""
    return any(b == p + a or a == p + b for p in NEGATING_PREFIXES)


@cache
def _oppositions() -> dict[str, frozenset[int]]:
    """word -> the sides of ``antonyms.txt``'s lines it stands on (line i: 2i left of '|', 2i + 1 right of it)."""
    sides: dict[str, set[int]] = {}
    lines = (resources.files(__package__) / "antonyms.txt").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(ln for ln in lines if ln and not ln.startswith("#")):
        left, right = line.split(" | ")
        for side, words in ((2 * i, left), (2 * i + 1, right)):
            for w in words.split():
                sides.setdefault(w, set()).add(side)
    return {w: frozenset(s) for w, s in sides.items()}


# Inflections back to a WordNet lemma: bigger -> big, thinnest -> thin, remembering -> remember, forgetting -> forget,
# and adverbs to their adjective (tightly -> tight, happily -> happy: WordNet links most adverbs to an adjective rather
# than to an opposite adverb). Over-generation is harmless: a guess that is no lemma matches nothing.
_SUFFIXES = (("iest", "y"), ("ier", "y"), ("ies", "y"), ("ily", "y"), ("est", ""), ("est", "e"), ("er", ""),
             ("er", "e"), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e"), ("ly", ""), ("es", ""), ("s", ""))


def lemmas(word: str) -> set[str]:
    out = {word}
    for suffix, ending in _SUFFIXES:
        stem = word[:-len(suffix)]
        if word.endswith(suffix) and len(stem) >= 2:
            out.add(stem + ending)
            if not ending and len(stem) >= 3 and stem[-1] == stem[-2]:  # bigger -> bigg -> big
                out.add(stem[:-1])
    return out


def opposite(a: str, b: str) -> bool:
    """True where WordNet calls some lemma of ``a`` and some lemma of ``b`` opposites (big / smaller, tightly /
    loosely): a swap between them can reverse what a sentence says while keeping its sentiment words."""
    table = _oppositions()
    sides_a = {s for w in lemmas(a) for s in table.get(w, ())}
    return any(s ^ 1 in sides_a for w in lemmas(b) for s in table.get(w, ()))


class EmbeddingNeighbours:
    """Word -> nearest whole-word neighbours in an input-embedding space, with a sentiment-polarity guard."""

    def __init__(self, vocab: list[str], embeddings: np.ndarray, k: int = 12, min_similarity: float = 0.5,
                 polarity: dict[str, int] | None = None):
        self.k, self.min_similarity = k, min_similarity
        self.polarity = polarity or {}
        self.index = {w: i for i, w in enumerate(vocab)}
        # Candidates: whole alphabetic words (no WordPiece continuations, no stop words, no scalar words).
        self.words = [w for w in vocab if w.isalpha() and len(w) > 1 and w not in WORDSUB_KEEPS]
        keep = np.asarray([self.index[w] for w in self.words])
        unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        self.unit, self.cand_unit = unit, unit[keep]
        self._cache: dict[str, list[str]] = {}

    def __call__(self, word: str, rng: np.random.Generator | None = None) -> list[str]:
        key = word.lower()
        if key not in self._cache:
            self._cache[key] = self._neighbours(key)
        return self._cache[key]

    def _neighbours(self, word: str) -> list[str]:
        if word not in self.index or word in WORDSUB_KEEPS or not word.isalpha():
            return []
        sims = self.cand_unit @ self.unit[self.index[word]]
        out = []
        for j in np.argsort(-sims, kind="stable"):
            if sims[j] < self.min_similarity or len(out) >= self.k:
                break
            cand = self.words[j]
            same_polarity = self.polarity.get(cand) == self.polarity.get(word)
            if cand != word and same_polarity and not _negation_pair(word, cand) and not opposite(word, cand):
                out.append(cand)
        return out

    @classmethod
    def from_model(cls, name: str, polarity: dict[str, int] | None = None, **kw) -> EmbeddingNeighbours:
        """Neighbours in the input-embedding table of a registered model (e.g. the bundled minilm-l6)."""
        model, tok = models.build_classifier(name, 2)
        vocab = [w for w, _ in sorted(tok.get_vocab().items(), key=lambda x: x[1])]
        emb = model.get_input_embeddings().weight.detach().float().numpy()
        return cls(vocab[:emb.shape[0]], emb[:len(vocab)], polarity=polarity, **kw)


def attack_steps(text: str, label: int, candidates: Candidates, method: str, rng: np.random.Generator,
                 max_frac: float = 0.25, max_words: int = 4) -> Generator[list[str], np.ndarray, AttackResult]:
    """The greedy attack of one sentence as a coroutine: it yields the texts it needs scored, receives their
    class probabilities (N x C) and finally returns its ``AttackResult``. ``run_attacks`` drives many of
    these at once, so the surrogate scores the queries of hundreds of sentences in a few large batches."""
    words = text.split()
    res = AttackResult(text=text, label=label, method=method, status="failed")
    p0 = (yield [text])[0]
    res.queries = 1
    if p0.argmax() != label or len(words) < 2:
        res.status = "skipped"
        return res
    dropped = yield [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]
    res.queries += len(words)
    order = np.argsort(-(p0[label] - dropped[:, label]), kind="stable")
    budget = edit_budget(len(words), max_frac, max_words)
    current, p_true = list(words), p0[label]
    for i in order:
        if len(res.changed) >= budget:
            break
        if words[i] in string.punctuation:
            continue
        cands = candidates(words[i], rng)
        if not cands:
            continue
        probs = yield [" ".join(current[:i] + [c] + current[i + 1:]) for c in cands]
        res.queries += len(cands)
        j = int(probs[:, label].argmin())
        if probs[j, label] >= p_true:
            continue
        current[i], p_true = cands[j], probs[j, label]
        res.changed.append(int(i))
        if probs[j].argmax() != label:
            res.status, res.adv = "success", " ".join(current)
            break
    if res.status != "success":  # no flip within the budget: the edits that lowered the true label's score (an
        res.adv = " ".join(current)  # unselected test set keeps them: such a text may still fool another model)
    return res


def drive(steps: list[Generator], score: Scorer, on_done: Callable[[], None] | None = None) -> list[AttackResult]:
    """Run attack coroutines in lockstep: each round scores every pending query of every unfinished
    sentence in one ``score`` call. Each sentence sees exactly the queries and answers it would see
    alone, so the results equal one-at-a-time attacks up to the scorer's batch-dependent rounding."""
    results: list[AttackResult | None] = [None] * len(steps)
    pending: dict[int, list[str]] = {}
    for i, gen in enumerate(steps):
        pending[i] = next(gen)
    while pending:
        keys = list(pending)
        flat = [t for k in keys for t in pending[k]]
        probs = score(flat)
        at = 0
        answers = {}
        for k in keys:
            answers[k] = probs[at:at + len(pending[k])]
            at += len(pending[k])
        pending = {}
        for k in keys:
            try:
                pending[k] = steps[k].send(answers[k])
            except StopIteration as done:
                results[k] = done.value
                if on_done is not None:
                    on_done()
    return results  # type: ignore[return-value]


def attack(text: str, label: int, score: Scorer, candidates: Candidates, method: str,
           rng: np.random.Generator, max_frac: float = 0.25, max_words: int = 4) -> AttackResult:
    """Greedy importance-ordered word replacement until ``score``'s prediction leaves ``label`` (one sentence)."""
    return drive([attack_steps(text, label, candidates, method, rng, max_frac, max_words)], score)[0]


def model_scorer(model, tokenizer, max_length: int = 64, batch_size: int = 128, precision: str = "fp32") -> Scorer:
    """A ``Scorer`` from a fine-tuned classifier: each call's queries tokenised in one go, batched by length,
    ``inference_mode`` and ``precision``'s autocast (``train.predict_texts``)."""
    device = next(model.parameters()).device

    def score(texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, model.config.num_labels), dtype=np.float32)
        # a fresh cache per call: queries rarely repeat, so keeping them would only hold memory
        return predict_texts(model, TokenCache(tokenizer, max_length), texts, batch_size, device, precision,
                             desc=None)

    return score


class ChunkStore(Protocol):
    """Where finished chunks of attacks are kept, so an interrupted generation resumes at its first missing chunk."""

    def load(self, lo: int) -> list[AttackResult] | None: ...

    def save(self, lo: int, results: list[AttackResult]) -> None: ...


def run_attacks(texts: list[str], labels: list[int], score: Scorer, methods: dict[str, Candidates], seed: int,
                max_frac: float = 0.25, max_words: int = 4, progress: bool = True,
                chunk: int = 512, store: ChunkStore | None = None) -> list[AttackResult]:
    """Attack sentence i with method ``names[i % len(names)]`` after a seeded shuffle: each clean sentence
    yields at most one triplet, so a split by triplet is also a split by source sentence. ``chunk``
    sentences are attacked together (their queries share the surrogate's batches); with a ``store``, each
    finished chunk is saved and a chunk already there is taken from it. A sentence's result depends only on its
    own seeded generator and the queries of its chunk, so a resumed run gives what an uninterrupted one gives."""
    from tqdm.auto import tqdm

    names = list(methods)
    assign = np.random.default_rng(seed).permutation(len(texts)) % len(names)
    out: list[AttackResult] = []
    with tqdm(total=len(texts), desc="attacking", unit="sent", disable=not progress, dynamic_ncols=True) as bar:
        for lo in range(0, len(texts), chunk):
            saved = store.load(lo) if store is not None else None
            hi = min(lo + chunk, len(texts))
            if saved is not None and [(r.text, r.label) for r in saved] != [(texts[i], int(labels[i]))
                                                                           for i in range(lo, hi)]:
                saved = None  # a chunk of other sentences (the data changed since it was saved): attack these
            if saved is not None:
                out.extend(saved)
                bar.update(len(saved))
                continue
            steps = []
            for i in range(lo, hi):
                name = names[assign[i]]
                rng = np.random.default_rng([seed, i])
                steps.append(attack_steps(texts[i], int(labels[i]), methods[name], name, rng, max_frac, max_words))
            done = drive(steps, score, on_done=lambda: bar.update(1))
            if store is not None:
                store.save(lo, done)
            out.extend(done)
    return out
