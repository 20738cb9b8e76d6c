"""Records and the summary over seeds (report/results.py)."""

import json

import numpy as np
import pytest

from w2strust.errors import W2SError
from w2strust.properties.fairness import Fairness
from w2strust.report.results import fmt, load_results, summarise, wts_trust


def _record(seed: int, dpd: float, role: str = "weak") -> dict:
    return {"strategy": "no_tft", "role": role, "seed": seed, "artefact": f"{role}-{seed}", "metrics": {"dpd": dpd}}


def test_the_summary_is_the_mean_and_sample_std_over_seeds():
    s = summarise([_record(0, 0.1), _record(1, 0.2), _record(2, 0.6)])["no_tft"]["weak"]["dpd"]
    assert s["mean"] == pytest.approx(0.3) and s["n"] == 3
    assert s["std"] == pytest.approx(np.sqrt(((0.2 ** 2) + (0.1 ** 2) + (0.3 ** 2)) / 2))  # ddof = 1
    one = summarise([_record(0, 0.1)])["no_tft"]["weak"]["dpd"]
    assert one == {"mean": pytest.approx(0.1), "std": 0.0, "n": 1} and fmt(one) == "0.100"


def test_a_repeated_record_is_refused_not_counted_twice(tmp_path):
    # the summary would average 3 values over 2 seeds (n = 3) while the WTS-trust test and the gates, keyed by
    # (role, seed), read one of the two copies
    lines = [_record(0, 0.1), _record(1, 0.2), _record(0, 0.1), _record(0, 0.3, "wts_naive")]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(W2SError, match=r"line 3 repeats the record of line 1 \(strategy no_tft, role weak, seed 0"):
        load_results(tmp_path)
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines[:2] + lines[3:]))
    assert len(load_results(tmp_path)) == 3


@pytest.mark.parametrize("n_bootstrap", [0, 20])
def test_a_strategy_with_a_role_missing_a_seed_gets_no_verdict(n_bootstrap, tmp_path):
    # the WTS-Naive mean would be over seed 0 alone against the others' two seeds (and the bootstrap ran into a
    # KeyError); the validity gates skip such a strategy too
    prop, rng = Fairness(), np.random.default_rng(0)
    dpd = {"weak": 0.3, "wts_naive": 0.2, "wts_aux": 0.2, "strong_ceiling": 0.1}
    records = [_record(s, v + 0.01 * s, role) for role, v in dpd.items() for s in (0, 1)
               if (role, s) != ("wts_naive", 1)]
    for r in records:
        (tmp_path / r["artefact"]).mkdir()
        (tmp_path / r["artefact"] / "preds.npz").write_bytes(b"")
    cols = {"label": rng.integers(0, 2, 50), "group": rng.integers(0, 2, 50)}
    preds = {"prob": np.stack([np.full(50, 0.4), np.full(50, 0.6)], 1)}
    trust = wts_trust(records, summarise(records), prop, tmp_path, n_bootstrap, lambda s: cols, lambda a: preds)
    assert trust == {}


def test_a_model_trained_without_dp_reads_no_dp_not_epsilon_zero():
    """run_stage records ε = 0 for a model without DP; the report must not print it as a privacy loss of zero."""
    from w2strust.report.run_report import _cell

    assert _cell("epsilon", {"mean": 0.0, "std": 0.0, "n": 3}) == "no DP (ε = ∞)"
    assert _cell("epsilon", {"mean": 7.993, "std": 0.0, "n": 3}) == "7.993 ± 0.000"
    assert _cell("perplexity", {"mean": 0.0, "std": 0.0, "n": 3}) == "0.000 ± 0.000"
