"""UCI Adult (census income) as text, for fairness: task income > 50K, protected attribute sex."""

from __future__ import annotations

import csv

from datasets import Dataset

from ..errors import W2SError
from .download import locate, reading

UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
           "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
           "income"]
# fnlwgt is a census sampling weight and education-num repeats education: left out of the text to
# keep sequences short. Sex stays in the text, as in the paper.
TEXT_COLUMNS = [c for c in COLUMNS if c not in {"fnlwgt", "education-num", "income"}]


def serialise(row: dict[str, str]) -> str:
    return "; ".join(f"{c} {row[c] if row[c] != '?' else 'unknown'}" for c in TEXT_COLUMNS)


def _read(path, skip_first: bool) -> Dataset:
    texts, labels, groups = [], [], []
    with reading(path, "UCI Adult file"), open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, skipinitialspace=True)
        for i, fields in enumerate(reader):
            if (skip_first and i == 0) or not fields or len(fields) < len(COLUMNS):
                continue
            row = dict(zip(COLUMNS, (x.strip() for x in fields[:len(COLUMNS)]), strict=True))
            income = row["income"].rstrip(".")
            if income not in {">50K", "<=50K"} or row["sex"] not in {"Male", "Female"}:
                raise W2SError(f"{path}: unexpected row {i + 1} (income={row['income']!r}, sex={row['sex']!r}); "
                               f"is this the UCI Adult file?")
            texts.append(serialise(row))
            labels.append(int(income == ">50K"))
            groups.append(int(row["sex"] == "Male"))  # a = 1: male, 0: female
    if not texts:
        raise W2SError(f"{path} holds no Adult rows")
    return Dataset.from_dict({"text": texts, "label": labels, "group": groups})


def load_adult(data_dir: str | None) -> tuple[Dataset, Dataset]:
    """(training pool from adult.data, test from adult.test)."""
    train = _read(locate("adult/adult.data", data_dir, UCI + "adult.data"), skip_first=False)
    # adult.test starts with a banner line (UCI) or a header line (shared/data copy): skip line 1.
    test = _read(locate("adult/adult.test", data_dir, UCI + "adult.test"), skip_first=True)
    return train, test
