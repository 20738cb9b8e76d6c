"""The sensitivity section of a study report (report/sensitivity.py)."""

from w2strust.report.sensitivity import markdown


def _stat(mean: float, std: float, n: int) -> dict:
    return {"mean": mean, "std": std, "n": n}


def test_the_curve_table_gives_a_std_only_where_there_are_seeds_to_spread():
    # summarise stores std 0.0 for one seed: printed as "± 0.000" it would claim seeds that agree exactly
    def point(x, n):
        roles = {r: {"dpd": _stat(0.1 * x, 0.02 if n > 1 else 0.0, n), "task_accuracy": _stat(0.8, 0.0, n)}
                 for r in ("weak", "wts_naive", "wts_aux", "strong_ceiling")}
        return {"x": x, "value": x, "metrics": {"no_tft": roles}}

    doc = {"property": "fairness", "keys": ["lambda_wts"], "trust_metric": "dpd", "task_metric": "task_accuracy",
           "higher_is_better": False, "files": ["c.png", "t.png", "c.json"], "points": [point(1.0, 1), point(2.0, 3)]}
    one, three = [line for line in markdown(doc).splitlines() if line.startswith("| No TFT")]
    assert "| 0.100 (0.800) |" in one and "±" not in one
    assert "| 0.200 ± 0.020 (0.800) |" in three


def test_eval_batch_size_is_a_setting_of_privacy_runs_only():
    """A privacy run's weak generations (its WTS models' training text) follow eval_batch_size: two privacy runs
    differing in it are two experiments, not one curve point pooled over; for a classifier it changes nothing."""
    from w2strust.report.sensitivity import varied_keys

    def run(prop, ebs):
        return {"flat": {"property": prop, "eval_batch_size": ebs, "lambda_wts": 1.0}}

    assert varied_keys([run("privacy", 16), run("privacy", 5)]) == ["eval_batch_size"]
    assert varied_keys([run("fairness", 16), run("fairness", 5)]) == []


def test_folders_at_one_setting_with_other_models_are_refused_not_pooled(tmp_path):
    """Device and data folder are not settings (a curve pools folders that differ only in them), but a CPU and a GPU
    run of one point hold different models of the same seed: one of them was dropped without a word."""
    import pytest

    from w2strust.errors import W2SError
    from w2strust.report.sensitivity import curve_points

    def run(name, artefact):
        recs = [{"strategy": "no_tft", "role": "weak", "seed": 0, "artefact": artefact, "metrics": {"dpd": 0.1}}]
        return {"dir": tmp_path / name, "flat": {"lambda_wts": 1.0}, "records": recs}

    assert len(curve_points([run("a", "weak-1"), run("b", "weak-1")], "lambda_wts")) == 1  # a shared base point
    with pytest.raises(W2SError, match="both hold no_tft / weak / seed 0 at lambda_wts = 1.0, from different models"):
        curve_points([run("cpu", "weak-1"), run("gpu", "weak-2")], "lambda_wts")
