"""How much room Adult leaves above the weakest bundled model: the most a fairness capability gap could be.

The fairness gap gate wants the ceiling 3 accuracy points above the weak model on every seed, and no bundled pair
passes it (bench/README.md "Recipes", grids B-H). This asks why, with two references that train no language model:

- **the table itself**: scikit-learn's HistGradientBoostingClassifier on Adult's raw columns (the same 12 columns
  the text holds; categorical columns as categories), trained on D_W (the weak model's rows), on D_W + D_WTS (the
  ceiling's rows) and on the whole training pool: a strong, standard tabular learner, i.e. about the best accuracy
  a model of these rows reaches;
- **frozen encoders**: each bundled encoder's masked mean-pooled last hidden states of the serialised text, never
  fine-tuned, with a logistic regression on top (C = 1), trained on D_W: the weakest thing a "weak model" made from
  that encoder could be.

Splits are the quick fairness preset's (``split_pool(pool, 2000, 1500, seed)``, ``subsample(test, 2000, seed)``) for
each ``--seeds``, so the numbers line up with that preset's weak model and ceiling. Prints one row per reference
with its accuracy per seed. Example (~5 min on 2 cores)::

    PYTHONPATH=$PWD/src HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_adult_headroom.py
"""

from __future__ import annotations

import numpy as np
import torch
from common import machine, parser, quiet

NUMERIC = ("age", "capital-gain", "capital-loss", "hours-per-week")


def table(texts: list[str], categories: dict[str, list[str]]):
    """The serialised rows back as a DataFrame (numbers as floats, the rest as categories of a fixed set)."""
    import pandas as pd

    from w2strust.data.adult import TEXT_COLUMNS

    rows = [dict(field.split(" ", 1) for field in t.split("; ")) for t in texts]
    df = pd.DataFrame(rows, columns=TEXT_COLUMNS)
    for c in TEXT_COLUMNS:
        df[c] = df[c].astype(float) if c in NUMERIC else pd.Categorical(df[c], categories=categories[c])
    return df


def mean_pooled(name: str, texts: list[str], max_length: int = 72, batch_size: int = 128) -> np.ndarray:
    from w2strust.models import build_classifier

    model, tok = build_classifier(name)
    encoder = model.base_model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
            hidden = encoder(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(out)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--encoders", nargs="+", default=["minilm-l1", "minilm-l3", "minilm-l6"])
    ap.add_argument("--n-weak", type=int, default=2000)
    ap.add_argument("--n-wts", type=int, default=1500)
    ap.add_argument("--n-test", type=int, default=2000)
    args = ap.parse_args()
    quiet()
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    from w2strust.data import split_pool, subsample
    from w2strust.data.adult import TEXT_COLUMNS, load_adult

    pool, test = load_adult(args.data_dir)
    every_row = [t.split("; ") for t in list(pool["text"]) + list(test["text"])]
    categories = {c: sorted({row[i].split(" ", 1)[1] for row in every_row})
                  for i, c in enumerate(TEXT_COLUMNS) if c not in NUMERIC}
    pool_x, pool_y = table(list(pool["text"]), categories), np.asarray(pool["label"])
    rows: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)

    for seed in args.seeds:
        weak, wts = split_pool(pool, args.n_weak, args.n_wts, seed)
        test_s = subsample(test, args.n_test, seed)
        test_x, test_y = table(list(test_s["text"]), categories), np.asarray(test_s["label"])
        record("majority class", float(max(test_y.mean(), 1 - test_y.mean())))
        order = np.random.default_rng(seed).permutation(len(pool))  # split_pool's order: D_W, then D_WTS
        for label, n in ((f"gradient boosting, raw columns, D_W ({args.n_weak:,} rows)", args.n_weak),
                         (f"gradient boosting, raw columns, D_W + D_WTS ({args.n_weak + args.n_wts:,})",
                          args.n_weak + args.n_wts),
                         (f"gradient boosting, raw columns, whole pool ({len(pool):,})", len(pool))):
            idx = order[:n]
            gbm = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
            record(label, float(gbm.fit(pool_x.iloc[idx], pool_y[idx]).score(test_x, test_y)))
        for name in args.encoders:
            probe = LogisticRegression(C=1.0, max_iter=5000)
            probe.fit(mean_pooled(name, list(weak["text"])), np.asarray(weak["label"]))
            record(f"{name} frozen, mean-pooled + logistic regression, D_W",
                   float(probe.score(mean_pooled(name, list(test_s["text"])), test_y)))
        print(f"seed {seed} done", flush=True)

    print(f"\nAdult headroom, accuracy on {args.n_test:,} test rows per seed ({', '.join(map(str, args.seeds))}); "
          f"{machine()}")
    print("| reference | " + " / ".join(f"seed {s}" for s in args.seeds) + " | mean |")
    print("|---|---|---|")
    for name, values in rows.items():
        print(f"| {name} | " + " / ".join(f"{100 * v:.1f}" for v in values) + f" | {100 * np.mean(values):.1f} |")


if __name__ == "__main__":
    main()
