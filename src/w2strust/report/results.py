"""Results of a run: its records, the summary over seeds, the weak-to-strong-trustworthiness test (paper Table 1)
and the models that collapsed to one class.

WTS trustworthiness holds for a strategy when both WTS models are more trustworthy than the weak
model and the strong ceiling is more trustworthy than both WTS models (paper §4); a property without
WTS-Aux-Loss (privacy) has two comparisons instead of four. ``holds`` compares means over seeds;
``significant`` adds a one-sided paired bootstrap over the test rows (the same resampled rows for
every model, metric averaged over seeds): each comparison must go the right way in at least 95% of
the resamples.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..config.schema import ROLES, STRATEGIES
from ..errors import W2SError

WTS_ROLES = ("wts_naive", "wts_aux")


def comparisons(roles: tuple[str, ...]) -> list[tuple[str, str]]:
    """(less, more) trustworthy pairs: weak -> each WTS model -> strong ceiling."""
    wts = [r for r in WTS_ROLES if r in roles]
    return [("weak", r) for r in wts] + [(r, "strong_ceiling") for r in wts]


RECORD_KEYS = ("strategy", "role", "seed", "metrics")


def load_results(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``results.jsonl``; a file that is empty, cut off or not w2strust's is one line naming the file,
    the line and the fix (a results file is rewritten whole by any run of the same command)."""
    path = Path(run_dir) / "results.jsonl"
    if not path.exists():
        raise W2SError(f"{path} does not exist: is {run_dir} the --out folder of a finished `w2strust run`?")
    fix = "rerun the `w2strust run` (or `study`) command that made it: cached stages are reused, nothing retrains"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise W2SError(f"{path} cannot be read as text ({type(e).__name__}); {fix}") from None
    records, first_line = [], {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise W2SError(f"{path} line {n} is not a JSON record (cut off or edited?); {fix}") from None
        if not isinstance(record, dict) or any(k not in record for k in RECORD_KEYS):
            raise W2SError(f"{path} line {n} is not a w2strust result record (needs {', '.join(RECORD_KEYS)}); {fix}")
        wrong = _wrong_field(record)
        if wrong:
            raise W2SError(f"{path} line {n}: {wrong} (damaged or edited?); {fix}")
        # One record per (strategy, role, seed): a repeated one (files concatenated or edited) would count twice in
        # the summary's mean, std and n while the tests and gates, keyed by (role, seed), would read only one of them.
        which = (record["strategy"], record["role"], record["seed"])
        if which in first_line:
            raise W2SError(f"{path} line {n} repeats the record of line {first_line[which]} (strategy {which[0]}, "
                           f"role {which[1]}, seed {which[2]}; damaged or edited?); {fix}")
        first_line[which] = n
        records.append(record)
    if not records:
        raise W2SError(f"{path} holds no records (empty: the run did not finish writing it?); {fix}")
    return records


def _wrong_field(record: dict[str, Any]) -> str | None:
    """What is wrong with a record's fields, if anything (each is used as a key or a number by the report)."""
    if record["strategy"] not in STRATEGIES:
        return f"strategy {record['strategy']!r} is none of {', '.join(STRATEGIES)}"
    if record["role"] not in ROLES:
        return f"role {record['role']!r} is none of {', '.join(ROLES)}"
    if not isinstance(record["seed"], int) or isinstance(record["seed"], bool):
        return f"seed {record['seed']!r} is not an integer"
    if not isinstance(record.get("artefact", ""), str) or "/" in record.get("artefact", ""):
        return f"artefact {record.get('artefact')!r} is not a stage folder name"
    metrics = record["metrics"]
    if not isinstance(metrics, dict) or not all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) or isinstance(v, (dict, list))
            for v in metrics.values()):
        return "metrics is not a mapping of metric names to numbers"
    return None


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """strategy -> role -> metric -> {mean, std, n} (std with ddof=1; 0 for one seed)."""
    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in records:
        for metric, v in r["metrics"].items():
            if isinstance(v, (int, float)):
                values[(r["strategy"], r["role"], metric)].append(float(v))
    out: dict = defaultdict(lambda: defaultdict(dict))
    for (strategy, role, metric), vs in values.items():
        a = np.asarray(vs)
        out[strategy][role][metric] = {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                                       "n": len(a)}
    return json.loads(json.dumps(out))


def _better(a: float, b: float, higher_is_better: bool) -> bool:
    """Is b more trustworthy than a?"""
    return b > a if higher_is_better else b < a


def tied(t: dict[str, Any]) -> bool:
    """× only because a comparison's means are equal (e.g. extraction rates that are multiples of 1/512): the strict
    comparison fails, but the models are not ordered either way, so the cell is no verdict for or against the paper."""
    means = t["means"]
    fails = [c for c in t["comparisons"] if not c["holds"]]
    return bool(fails) and all(math.isclose(means[c["more"]], means[c["less"]], rel_tol=1e-9, abs_tol=1e-12)
                               for c in fails)


def wts_trust(records, summary, prop, cache: Path, n_bootstrap: int, test_columns, preds, seed: int = 0
              ) -> dict[str, Any]:
    """``test_columns(seed)`` gives the ground truth that each seed's stored predictions are aligned with;
    ``preds(artefact)`` a stage's stored predictions (loaded once per report, shared with the validity gates)."""
    metric = prop.trust_metric
    roles, pairs = prop.roles, comparisons(prop.roles)
    out: dict[str, Any] = {}
    strategies = [s for s in STRATEGIES if s in summary]

    cols_by_seed: dict[int, dict[str, np.ndarray]] = {}
    for strategy in strategies:
        arts = {(r["role"], r["seed"]): r["artefact"] for r in records if r["strategy"] == strategy}
        seeds = sorted({s for _, s in arts})
        if any((role, s) not in arts for role in roles for s in seeds):
            continue  # a role without some seed: its mean is over other seeds than the rest (validity skips it too)
        means = {role: summary[strategy][role][metric]["mean"] for role in roles if role in summary[strategy]}
        if len(means) < len(roles):
            continue
        checks = [{"less": a, "more": b, "holds": _better(means[a], means[b], prop.higher_is_better)}
                  for a, b in pairs]
        result = {"metric": metric, "higher_is_better": prop.higher_is_better, "means": means, "comparisons": checks,
                  "holds": all(c["holds"] for c in checks)}
        if n_bootstrap > 0 and all((Path(cache) / a / "preds.npz").exists() for a in arts.values()):
            for s in seeds:
                if s not in cols_by_seed:
                    cols_by_seed[s] = test_columns(s)
            rng = np.random.default_rng(seed)
            diffs: dict[int, list[bool]] = {i: [] for i in range(len(pairs))}
            for _ in range(n_bootstrap):
                vals: dict[str, float] = {}
                idx_by_seed = {s: rng.integers(0, len(next(iter(cols_by_seed[s].values()))),
                                               len(next(iter(cols_by_seed[s].values())))) for s in seeds}
                for role in roles:
                    per_seed = []
                    for s in seeds:
                        p, c = prop.resample(preds(arts[(role, s)]), cols_by_seed[s], idx_by_seed[s])
                        per_seed.append(prop.trust_value(p, c))
                    vals[role] = float(np.mean(per_seed))
                for i, (a, b) in enumerate(pairs):
                    diffs[i].append(_better(vals[a], vals[b], prop.higher_is_better))
            for i, c in enumerate(checks):
                c["p_value"] = float(1.0 - np.mean(diffs[i]))
            result["significant"] = all(c["holds"] and c["p_value"] < 0.05 for c in checks)
            result["resamples"] = n_bootstrap
            result["test"] = (f"one-sided paired bootstrap over test rows ({n_bootstrap} resamples, {metric} "
                              f"averaged over {len(seeds)} seed(s)); p < 0.05 for all {len(pairs)} comparisons")
        else:
            result["significant"] = None
            result["test"] = "not run (n_bootstrap = 0 or predictions missing)"
        out[strategy] = result
    return out


def fmt_p(p: float, resamples: int | None = None) -> str:
    """A bootstrap p-value for a report. 0 means no resample went the other way: p is below the test's resolution
    (1 / resamples, 0.002 at the default 500), not zero, so it reads "p < 0.002"."""
    if p == 0 and resamples:
        return f"p < {1 / resamples:.2g}"
    return f"p = {p:.3f}"


def fmt(stat: dict[str, float] | None, digits: int = 3) -> str:
    if not stat:
        return "–"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}" if stat["n"] > 1 else f"{stat['mean']:.{digits}f}"


def collapsed_models(records: list[dict[str, Any]], cache: Path) -> list[dict[str, Any]]:
    """Classifiers that predict one class for every test row: their trust metric is trivially perfect
    (e.g. |DPD| = 0), so the report flags them rather than let them "win" silently."""
    single_class: dict[str, int | None] = {}  # per artefact: strategies share weak models and the ceiling
    for artefact in {r["artefact"] for r in records}:
        single_class[artefact] = None
        path = Path(cache) / artefact / "preds.npz"
        if path.exists():
            with np.load(path) as z:
                classes = np.unique(z["prob"].argmax(-1)) if "prob" in z.files else []
            if len(classes) == 1:
                single_class[artefact] = int(classes[0])
    return [{"strategy": r["strategy"], "role": r["role"], "seed": r["seed"], "class": single_class[r["artefact"]]}
            for r in records if single_class[r["artefact"]] is not None]
