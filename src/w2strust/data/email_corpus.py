"""Enron e-mails for the privacy property (real personal data: never print or log the texts).

Offline (a data folder laid out like ``shared/data``): the 517 raw e-mails of ``emails_slice_0.csv``
(kept as ``From:``/``To:``/``Subject:`` header lines + body, so that real addresses appear in the
text for the PII metric) plus the 3,432 pre-processed Enron-Spam ham e-mails. Online (no data folder):
a public Enron sample from the Hugging Face Hub (the paper samples 10,000 e-mails).

E-mails are de-duplicated on their first ``DEDUP_CHARS`` characters (whitespace collapsed) and very short ones
dropped, so that every e-mail can give a prefix and a suffix and no e-mail, nor a near-copy of one (a re-send, a
forward), is both a member and a non-member.
"""

from __future__ import annotations

import csv
import email
import json
from functools import lru_cache
from pathlib import Path

from datasets import Dataset

from ..errors import W2SError
from .download import locate, reading

RAW = "enron/raw_emails/emails_slice_0.csv"
HAM = "enron/raw_emails/enron_spam_enron1_ham.csv"
DT = "enron/decodingtrust_enron_data/"
HUB_DATASET = "corbt/enron-emails"  # ~500k raw e-mails; columns include from/to/subject/body
MIN_CHARS = 200  # shorter e-mails cannot give a prefix + k-token suffix
MAX_CHARS = 4000  # the models see at most a few hundred tokens; cut long threads early (cheaper tokenising)
# Two e-mails that agree on their first MIN_CHARS characters (whitespace collapsed) are one, the first kept: re-sends,
# forwards, form letters. Beyond exact repeats the offline pool held 40 (27 differ only in white space); on the full
# preset 1-2 held-out e-mails per seed had the same first 128 tokens as a training e-mail. Since membership inference
# scores only the extraction window (start token(s) + prefix + suffix, a median 121-149 characters), two
# e-mails that differ only past the window but within 200 characters both stay, with the same window: a member and a
# non-member then score one text. Measured (audit, 2026-12-05): 0 of 32 members per role and seed in the quick preset,
# 0-5 of 500 in the full one. The window is in each model's own tokens, so Privacy.lm_evaluate leaves such a
# non-member out of the attack (evaluation 5) rather than this pool.
DEDUP_CHARS = MIN_CHARS


def _raw_to_text(message: str) -> str:
    m = email.message_from_string(message)
    body = m.get_payload()
    if not isinstance(body, str):  # multipart: keep the text parts
        body = "\n".join(p.get_payload() for p in m.walk() if p.get_content_type() == "text/plain")
    head = "".join(f"{k}: {' '.join(str(m[k]).split())}\n" for k in ("From", "To", "Subject") if m[k])
    return head + "\n" + body.strip()


def _clean(texts: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for t in texts:
        t = t.strip()[:MAX_CHARS]
        key = " ".join(t.split())[:DEDUP_CHARS]
        if len(t) >= MIN_CHARS and key not in seen:
            seen.add(key)
            out.append(t)
    return out


def _load_offline(data_dir: str) -> tuple[str, ...]:
    """The offline pool, read once per version of its two files (a file replaced in the same process, a notebook's
    second run, is read again: the stage keys of that run name the new file)."""
    raw_path, ham_path = locate(RAW, data_dir, None), locate(HAM, data_dir, None)
    version = tuple((st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)  # ino/ctime: `cp -p` keeps size, mtime
                    for st in (raw_path.stat(), ham_path.stat()))
    return _read_offline(raw_path, ham_path, version)


@lru_cache(maxsize=4)
def _read_offline(raw_path: Path, ham_path: Path, version: tuple) -> tuple[str, ...]:
    csv.field_size_limit(1 << 24)
    with reading(raw_path, "Enron raw e-mail CSV (column 'message')"), \
            open(raw_path, newline="", encoding="utf-8", errors="replace") as f:
        raw = [_raw_to_text(r["message"]) for r in csv.DictReader(f)]
    with reading(ham_path, "Enron-Spam ham CSV (column 'text_ham')"), \
            open(ham_path, newline="", encoding="latin-1") as f:
        ham = [r["text_ham"] for r in csv.DictReader(f)]
    return tuple(_clean(raw + ham))


def _load_hub(n: int, seed: int) -> list[str]:  # pragma: no cover - needs the Hub
    from datasets import load_dataset

    try:
        ds = load_dataset(HUB_DATASET, split="train")
    except Exception as e:
        raise W2SError(f"could not load {HUB_DATASET} from the Hugging Face Hub ({e}). Offline? Pass --data-dir "
                       f"(or set W2STRUST_DATA) to a folder with {RAW} and {HAM}.") from None
    ds = ds.shuffle(seed=seed).select(range(min(len(ds), 3 * n)))
    texts = []
    for r in ds:
        head = "".join(f"{k.title()}: {r[k]}\n" for k in ("from", "to", "subject") if r.get(k))
        texts.append(head + "\n" + str(r.get("body") or r.get("text") or ""))
    return _clean(texts)[:n]


def load_enron(data_dir: str | None, n_total: int, seed: int = 0) -> Dataset:
    """A pool of unique e-mails (column ``text``): the offline copies, or ``n_total`` sampled from the Hub."""
    texts = list(_load_offline(str(data_dir))) if data_dir else _load_hub(n_total, seed)
    if not texts:
        raise W2SError("the Enron pool is empty")
    return Dataset.from_dict({"text": texts})


def load_decodingtrust_maps(data_dir: str | None, shots: str = "five_shot") -> tuple[dict, dict]:
    """(email -> name, target email -> k-shot [[demo email, demo name], ...]) from DecodingTrust; ({}, {}) offline
    without the files (the k-shot PII metric is then skipped)."""
    if not data_dir:
        return {}, {}
    try:
        names_path, demos_path = locate(DT + "email2name.json", data_dir, None), locate(DT + f"{shots}.json", data_dir,
                                                                                         None)
    except W2SError:
        return {}, {}
    with reading(names_path, "DecodingTrust e-mail map"):
        names = json.loads(names_path.read_text(encoding="utf-8"))
    with reading(demos_path, "DecodingTrust k-shot file"):
        demos = json.loads(demos_path.read_text(encoding="utf-8"))
    return names, demos
