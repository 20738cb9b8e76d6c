"""Checks a generated adversarial set against the attack guards of generator version 6 (docs/adversarial.md).

    python bench/check_attack_guards.py ~/.cache/w2strust/data/adv-sst2-<key>

(the folder the build prints: "cached in ..."). Every triplet's words are compared with its clean text:
- charbug must not edit a stop word or negation (``attacks.CHARBUG_KEEPS``);
- wordsub must not replace, or replace with, a stop word, negation or scalar word (``attacks.WORDSUB_KEEPS``);
- wordsub must not swap a word for its WordNet opposite (``attacks.opposite``: big -> small, thin -> thick).
A set of an older version fails the checks its version did not have (the version-5 quick set: 71 swaps to an opposite).
Prints counts and word pairs only (SST-2 movie-review words), never a sentence. Exit status 1 on a violation.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from w2strust.properties.attacks import CHARBUG_KEEPS, WORDSUB_KEEPS, opposite


def main(folder: Path) -> int:
    rows = [json.loads(line) for line in (folder / "triplets.jsonl").read_text().splitlines()]
    violations: Counter[str] = Counter()
    swaps: Counter[tuple[str, str]] = Counter()
    status: Counter[tuple[str, str]] = Counter()
    substitutions, swap_rows = 0, Counter()
    for r in rows:
        status[(r["method"], r["status"])] += 1
        if r["status"] == "skipped":
            continue
        found = False
        for x, y in zip(r["text"].split(), r["text_adv"].split(), strict=True):
            if x == y:
                continue
            word = x.lower()
            if r["method"] == "charbug" and word in CHARBUG_KEEPS:
                violations["charbug edited a stop word or negation"] += 1
            if r["method"] == "wordsub":
                substitutions += 1
                if word in WORDSUB_KEEPS or y.lower() in WORDSUB_KEEPS:
                    violations["wordsub replaced or used a kept word"] += 1
                if opposite(word, y.lower()):
                    violations["wordsub swapped a word for its opposite"] += 1
                    swaps[(word, y.lower())] += 1
                    found = True
        if found:
            swap_rows[r["status"]] += 1
    print(f"{len(rows)} sentences; " + ", ".join(f"{m} {s} {n}" for (m, s), n in sorted(status.items())))
    print(f"wordsub substitutions: {substitutions}")
    print(f"violations: {dict(violations) or 'none'}")
    pairs = ", ".join(f"{a} -> {b} {n}" for (a, b), n in swaps.most_common())
    print(f"swaps to the opposite: {sum(swaps.values())} in {sum(swap_rows.values())} sentences"
          + (f" ({dict(swap_rows)}): {pairs}" if swaps else ""))
    return 1 if violations else 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]).expanduser() / "triplets.jsonl").exists():
        sys.exit("usage: python bench/check_attack_guards.py SET_FOLDER (a folder holding triplets.jsonl)")
    sys.exit(main(Path(sys.argv[1]).expanduser()))
