import json

import pytest

from w2strust.cli import main
from w2strust.experiment.ceiling_rule import suggest
from w2strust.properties import get


def _pt(lam, trust, acc):
    return {"lambda": lam, "dpd": {"mean": trust, "std": 0, "n": 1}, "task_accuracy": {"mean": acc, "std": 0, "n": 1}}


def test_suggest_takes_most_trustworthy_within_the_accuracy_budget():
    prop = get("fairness")  # lower dpd is better
    points = [_pt(0, 0.20, 0.85), _pt(1, 0.10, 0.845), _pt(3, 0.05, 0.838), _pt(10, 0.01, 0.80)]
    assert suggest(points, prop, max_drop=0.015) == 3  # λ=10 costs 5 points: too much
    assert suggest(points, prop, max_drop=0.1) == 10
    assert suggest(points, prop, max_drop=0.0) == 0


def test_sweep_command_trains_one_model_per_lambda_and_seed(tmp_path, capsys):
    out = tmp_path / "sw"
    argv = ["sweep", "fairness", "--preset", "smoke", "--lambdas", "0,5", "--seeds", "0,1", "--out", str(out),
            "--log", "tensorboard"]
    assert main(argv) == 0
    # --log: one tracked run per swept model
    logged = {str(p.parent.relative_to(out / "tensorboard")) for p in (out / "tensorboard").rglob("events.out.*")}
    assert logged == {f"sweep-strong_ceiling/lambda={lam}/seed{s}" for lam in (0, 5) for s in (0, 1)}
    result = json.loads((out / "sweep.json").read_text())
    assert [p["lambda"] for p in result["points"]] == [0, 5]
    assert all(p["dpd"]["n"] == 2 for p in result["points"])
    assert len(list((out / "cache").glob("ceiling-*/meta.json"))) == 4
    assert (out / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    assert "suggested λ" in capsys.readouterr().out
    # the sweep's ceilings are ordinary stages: a run with the same λ reuses them
    swept = {p.name for p in (out / "cache").glob("ceiling-*")}
    run_out = tmp_path / "run"
    assert main(["run", "fairness", "--preset", "smoke", "--seeds", "0,1", "--set", "lambda_ceiling=5",
                 "--strategies", "no_tft", "--out", str(run_out), "--cache", str(out / "cache")]) == 0
    records = [json.loads(x) for x in (run_out / "results.jsonl").read_text().splitlines()]
    ceilings = {r["artefact"] for r in records if r["role"] == "strong_ceiling"}
    assert len(ceilings) == 2 and ceilings <= swept
    assert {p.name for p in (out / "cache").glob("ceiling-*")} == swept  # no new ceiling was trained


@pytest.mark.parametrize("argv, message", [
    (["--lambdas", "0,x"], "--lambdas must be comma-separated numbers"),
    (["--role", "wts_aux"], "--role must be one of"),
    (["--lambdas", "0,1,1.0"], "--lambdas repeats a value"),  # its models counted twice in mean ± std
])
def test_sweep_bad_arguments(argv, message, tmp_path, capsys):
    assert main(["sweep", "fairness", "--preset", "smoke", "--out", str(tmp_path)] + argv) == 2
    assert message in capsys.readouterr().err


def test_suggest_respects_a_lower_is_better_task_metric():
    prop = get("privacy")  # trust: extraction_rate (lower better); task: perplexity (lower better)
    pts = [{"lambda": lam, "extraction_rate": {"mean": ex, "std": 0, "n": 1},
            "perplexity": {"mean": ppl, "std": 0, "n": 1}} for lam, ex, ppl in
           [(0, 0.20, 40.0), (8, 0.15, 45.0), (1, 0.10, 90.0)]]
    assert suggest(pts, prop, max_drop=10.0) == 8  # ε = 1 costs 50 perplexity points
    assert suggest(pts, prop, max_drop=100.0) == 1


def test_sweep_checks_each_lambda_with_the_property(tmp_path, monkeypatch):
    # The property's own λ checks ran only on the config's λ, not on the swept ones: an adversarial sweep at λ = 2
    # trained with the loss -1·clean + 2·adversarial (its λ is a weight in [0, 1]) and plotted it as a trade-off point.
    from w2strust import api
    from w2strust.errors import W2SError
    from w2strust.experiment import sweep

    def trained(*a, **k):
        raise AssertionError("a swept λ out of the property's range reached training")

    monkeypatch.setattr(sweep.Runner, "execute_all", trained)
    cfg = api.configure("adversarial", "smoke")
    for role in sweep.SWEEP_ROLES:
        with pytest.raises(W2SError, match=r"--lambdas.*2"):
            sweep.run_sweep(cfg, role, [0.0, 2.0], tmp_path / role)


def test_without_lambda_0_privacy_measures_the_cost_from_its_largest_epsilon():
    """The reference of the rule was the smallest λ when λ = 0 was not swept: for privacy, whose λ is ε, that is the
    most regularised model (ε = 1), so every other ε looked free and the rule picked ε = 1 whatever its perplexity
    cost. The least regularised λ (the largest ε) is the reference; other properties keep the smallest."""
    from w2strust.experiment.ceiling_rule import trade_off

    prop = get("privacy")
    pts = [{"lambda": lam, "extraction_rate": {"mean": ex, "std": 0, "n": 1},
            "perplexity": {"mean": ppl, "std": 0, "n": 1}} for lam, ex, ppl in
           [(1, 0.10, 90.0), (4, 0.14, 50.0), (8, 0.15, 45.0)]]
    assert suggest(pts, prop, max_drop=10.0) == 4  # ε = 1 costs 45 perplexity points over ε = 8
    assert suggest(pts, prop, max_drop=100.0) == 1
    metrics = {lam: [{"extraction_rate": ex, "perplexity": ppl}] for lam, ex, ppl in [(1, 0.1, 90.0), (8, 0.15, 45.0)]}
    assert "else the largest λ" in trade_off(prop, "strong_ceiling", metrics, 10.0)["rule"]
    fair = get("fairness")  # without λ = 0, the smallest λ stays the reference
    points = [_pt(1, 0.10, 0.845), _pt(3, 0.05, 0.838), _pt(10, 0.01, 0.80)]
    assert suggest(points, fair, max_drop=0.01) == 3
    assert "else the smallest λ" in trade_off(fair, "strong_ceiling", {1: [{"dpd": 0.1, "task_accuracy": 0.8}]},
                                              0.01)["rule"]
