"""The Python API (``w2strust.run``, ``study``, ``load_results``, ``properties.register``): the same checks, cache,
files and numbers as the command line."""

import json

import numpy as np
import pytest

import w2strust
from w2strust.errors import W2SError
from w2strust.properties.base import TrustProperty
from w2strust.properties.fairness import Fairness


def test_run_from_python_reuses_the_cli_cache_and_gives_the_same_numbers(smoke_run, tmp_path):
    cli_out = smoke_run("fairness", "--strategies", "no_tft")
    res = w2strust.run("fairness", "smoke", strategies=["no_tft"], out=tmp_path / "api", cache=cli_out / "cache")
    assert res.trained == []  # every stage came from the command line's cache
    assert (tmp_path / "api" / "results.jsonl").read_text() == (cli_out / "results.jsonl").read_text()
    assert res.summary["wts_trust"]["no_tft"]["holds"] == json.loads((cli_out / "summary.json").read_text())[
        "wts_trust"]["no_tft"]["holds"]
    frame = res.frame
    assert len(frame) == 4 and {"strategy", "role", "seed", "dpd", "task_accuracy"} <= set(frame.columns)
    assert np.allclose(frame["dpd"], [r["metrics"]["dpd"] for r in res.records])
    again = w2strust.load_results(tmp_path / "api")
    assert again.records == res.records and again.config["property"] == "fairness"


def test_api_errors_are_the_clis_one_line_errors(tmp_path):
    with pytest.raises(W2SError, match="unknown property 'fairnes'"):
        w2strust.run("fairnes", "smoke", out=tmp_path)
    with pytest.raises(W2SError, match="unknown config key 'weak_train.lrr'"):
        w2strust.run("fairness", "smoke", overrides={"weak_train": {"lrr": 1}}, out=tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(W2SError, match="is an existing file"):
        w2strust.run("fairness", "smoke", out=tmp_path / "file")
    with pytest.raises(W2SError, match="does not exist"):
        w2strust.load_results(tmp_path / "nothing")


def test_study_from_a_dict_dry_run_lists_its_stages(tmp_path):
    text = w2strust.study({"properties": ["fairness", "ood"], "preset": "smoke", "seeds": [0, 1],
                           "strategies": ["no_tft"]}, out=tmp_path / "s", dry_run=True)
    assert "2 run(s), 16 unique stage(s): 0 cached, 16 to train" in text


def test_a_property_registered_from_python_is_found_by_name():
    class Renamed(Fairness):
        name = "fairness-renamed"

    prop = w2strust.properties.register(Renamed)
    assert isinstance(prop, TrustProperty) and w2strust.properties.get("fairness-renamed") is prop
    assert "fairness-renamed" in w2strust.properties.names()
    cfg = w2strust.configure("fairness-renamed", "smoke")
    assert cfg.property == "fairness-renamed" and cfg.weak_model == "tiny-bert"


def test_config_dataclasses_are_exported():
    assert w2strust.ExperimentConfig().strong_train.lr == w2strust.TrainConfig().lr
    with pytest.raises(AttributeError):
        w2strust.no_such_name  # noqa: B018


def test_models_table_columns_line_up_for_the_longest_name(capsys):
    from w2strust.cli import main

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines[0].index("source")
    assert any(line.startswith("tiny-gpt-neox-wide ") for line in lines)
    for line in lines[1:]:  # each row's source column starts under the header's, after at least one space
        assert line[start - 1] == " " and line[start:].split()[0] in {"bundled", "hub", "tiny", "local"}


def test_a_saved_config_is_rebuilt_on_its_own_preset_not_under_quick(tmp_path):
    """`w2strust run privacy --config runs/x/config.yaml` (README: rerun a run) of a smoke run: the file's keys used to
    land on the quick preset, whose extra options the file does not set (optimizer, lora_layers) stayed in."""
    import argparse

    from w2strust import cli
    from w2strust.config import save_yaml

    made = w2strust.configure("privacy", "smoke")
    path = tmp_path / "config.yaml"
    save_yaml(made, path)
    preset = cli._preset(argparse.Namespace(preset=None, config=str(path)))
    assert preset == "smoke"
    assert w2strust.configure("privacy", preset, config_file=path).to_dict() == made.to_dict()
    with pytest.raises(W2SError, match="made with preset 'smoke'.*--preset smoke"):
        w2strust.configure("privacy", "quick", config_file=path)
    assert cli._preset(argparse.Namespace(preset=None, config=None)) == "quick"
    # a file made without a preset: the advice was "give --preset custom", which is no preset
    (tmp_path / "custom.yaml").write_text("preset: custom\nseeds: [3]\n")
    with pytest.raises(W2SError, match=r"made with preset 'custom'.*give no preset \(Python: preset=None\)"):
        w2strust.configure("fairness", "quick", config_file=tmp_path / "custom.yaml")
    assert w2strust.configure("fairness", None, config_file=tmp_path / "custom.yaml").seeds == [3]


@pytest.mark.parametrize("override, needle", [("preset=smoke", "'preset' cannot be overridden"),
                                              ("property=ood", "'property' cannot be overridden")])
def test_preset_and_property_are_not_config_overrides(override, needle):
    """--set preset=smoke only relabelled a quick run; --set property=ood ran OOD on fairness' preset values."""
    with pytest.raises(W2SError, match=needle):
        w2strust.configure("fairness", "quick", [override])
    assert w2strust.configure("fairness", "smoke", ["preset=smoke", "property=fairness"]).preset == "smoke"


def test_a_whole_config_given_without_a_preset_keeps_its_preset_label():
    """`w2strust report` rebuilds a run's config from config.yaml as overrides on no preset."""
    from w2strust.config.build import build_config

    made = w2strust.configure("fairness", "smoke").to_dict()
    cfg = build_config("fairness", overrides={k: v for k, v in made.items() if k != "property"})
    assert cfg.to_dict() == made


@pytest.mark.parametrize("first", ["w2strust.load_results", "w2strust.report", "__import__('w2strust.api')"])
def test_w2strust_report_stays_the_api_function_after_the_report_subpackage_is_imported(first):
    """README: ``w2strust.report(run_dir)`` rebuilds reports. ``w2strust/report/`` is also a subpackage, and importing
    the API (any call: run, load_results, ...) bound that module over the name: ``'module' object is not callable``."""
    import subprocess
    import sys

    code = f"import w2strust; {first}; import w2strust.report.table1; print(callable(w2strust.report))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]


def test_overrides_take_numpy_numbers_and_paths_like_the_named_settings():
    """``overrides={"lambda_wts": np.int64(2)}`` (a value from np.arange in a notebook) or a ``Path`` data folder
    ended in a raw TypeError ('not JSON serializable') instead of a config or a one-line W2SError."""
    from pathlib import Path

    given = {"lambda_wts": np.int64(2), "data": {"n_weak": np.int32(100), "data_dir": Path("/x")}}
    cfg = w2strust.configure("fairness", "smoke", overrides=given)
    assert cfg.lambda_wts == 2.0 and cfg.data.n_weak == 100 and cfg.data.data_dir == "/x"
    with pytest.raises(W2SError, match="lambda_wts"):
        w2strust.configure("fairness", "smoke", overrides={"lambda_wts": object()})


def test_a_study_dict_takes_numpy_numbers(tmp_path):
    spec = {"properties": ["fairness"], "preset": "smoke", "seeds": [0], "lambda_wts": list(np.arange(1, 3))}
    plan = w2strust.study(spec, out=tmp_path / "s", dry_run=True)
    assert "2 run(s)" in plan


def test_report_of_a_study_folder_refuses_an_out_it_would_ignore(tmp_path):
    """A study folder's reports are rewritten in place: an --out / out= was silently ignored."""
    (tmp_path / "study.json").write_text("{}")
    with pytest.raises(W2SError, match="is a study folder.*would be ignored"):
        w2strust.report(tmp_path, out=tmp_path / "elsewhere")


def test_the_command_line_draws_no_datasets_bars(tmp_path, capsys):
    """Each datasets filter / select of a few hundred rows drew a bar ("Flattening the indices": 50 lines in one quick
    run) between the stage bars and the results."""
    from w2strust.cli import main

    assert main(["models"]) == 0
    import datasets

    assert not datasets.is_progress_bar_enabled()
    datasets.enable_progress_bars()
