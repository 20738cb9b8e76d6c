"""A fuzzing harness for the entry points (issue 19): generated study files, generated ``--set`` overrides and run
folders with a damaged file. Every case must end with exit 0 or 2 and, on 2, a single ``w2strust: error:`` line;
never exit 1 (a bug), never a hang (each case runs under an alarm), and never a result file worse than before
(a failed ``report`` leaves every file of the run folder as it was).

Cases run in this process through ``w2strust.cli.main`` (an import per case would cost seconds); training is never
reached: studies and overrides run with ``--dry-run``. Hypothesis is derandomised, so CI runs the same cases every
time; ``W2S_FUZZ_EXAMPLES`` raises the count for a longer local search.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis", reason="the fuzzing harness needs hypothesis (pip install -e .[dev])")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from w2strust.cli import main  # noqa: E402

EXAMPLES = int(os.environ.get("W2S_FUZZ_EXAMPLES", "0")) or None
CASE_SECONDS = 60  # a case that takes longer is a hang
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

PROPERTIES = ["fairness", "ood", "adversarial", "privacy"]
PRESETS = ["smoke", "quick", "paper"]
CONFIG_KEYS = ["seeds", "strategies", "lambda_weak", "lambda_wts", "lambda_ceiling", "alpha_max", "aux_warmup",
               "weak_model", "strong_model", "weak_train.lr", "weak_train.epochs", "weak_train.batch_size",
               "strong_train.max_length", "strong_train.lr_warmup", "data.n_weak", "data.n_wts", "data.n_test",
               "n_bootstrap", "min_gap", "precision", "device", "eval_batch_size", "save_models", "extra"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(-10**30, 10**30),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from(["", "0", "1e-4", "nan", "-inf", "fairness", "smoke", "tiny-bert", "no_tft", "bf16", "cpu",
                     "1,2", "[]", "{}", "../../etc", "minilm-l6", "auto"]),
    st.text(max_size=12))
plausible = st.sampled_from(["0", "1", "2", "0.5", "3", "1e-3", "0,1", "no_tft", "weak_tft,weak_wts_tft", "fp32",
                             "bf16", "cpu", "tiny-bert", "tiny-bert-wide", "true", "false", "16", "64"])
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.sampled_from(CONFIG_KEYS + ["x"]), inner,
                                                                       max_size=2)),
                      max_leaves=5)


def _nested(key: str, value):
    node = value
    for part in reversed(key.split(".")[1:]):
        node = {part: node}
    return key.split(".")[0], node


@st.composite
def study_specs(draw):
    spec = {}
    if draw(st.booleans()):
        spec["properties"] = draw(st.one_of(st.lists(st.sampled_from(PROPERTIES + ["nope", ""]), max_size=3),
                                            st.sampled_from(PROPERTIES), values))
    if draw(st.booleans()):
        spec["preset"] = draw(st.one_of(st.sampled_from(PRESETS + ["smoke", "smoke", "huge"]), values))
    for key in draw(st.lists(st.sampled_from(CONFIG_KEYS + ["sweeps", "per_property", "models", "junk"]),
                             max_size=3, unique=True)):
        k, v = _nested(key, draw(st.one_of(plausible.map(yaml.safe_load), values)))
        spec[k] = v
    if draw(st.booleans()):
        spec["sweeps"] = draw(st.lists(st.dictionaries(st.sampled_from(["lambda_wts", "alpha_max", "seeds"]),
                                                       st.lists(scalars, max_size=3), max_size=2), max_size=2))
    return spec


def _run_case(argv: list[str]) -> tuple[int, str]:
    """``main(argv)`` under an alarm; returns (exit code, stderr)."""
    def hang(signum, frame):
        raise TimeoutError(f"no answer in {CASE_SECONDS} s: {argv}")

    err = io.StringIO()
    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(CASE_SECONDS)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return rc, err.getvalue()


def _check_outcome(rc: int, err: str, case) -> None:
    hypothesis.event(f"exit {rc}")  # pytest --hypothesis-show-statistics: how many cases got how far
    assert rc in (0, 2), f"exit {rc} for {case!r}: {err[-1500:]}"
    last = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()]
    if rc == 2:
        errors = [ln for ln in last if ln.startswith("w2strust:")]
        assert len(errors) == 1 and last[-1].startswith("w2strust: error: "), f"{case!r}: {err[-1500:]}"
    assert "Traceback" not in err, f"{case!r}: {err[-1500:]}"


@settings(max_examples=EXAMPLES or 70, **SETTINGS)
@given(spec=study_specs(), raw=st.one_of(st.none(), st.text(max_size=40)))
def test_generated_study_files(spec, raw, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    path = tmp / "s.yaml"
    path.write_text(raw if raw is not None else yaml.safe_dump(spec, allow_unicode=True))
    rc, err = _run_case(["study", str(path), "--out", str(tmp / "o"), "--dry-run"])
    _check_outcome(rc, err, path.read_text()[:400])


@settings(max_examples=EXAMPLES or 70, **SETTINGS)
@given(prop=st.sampled_from(PROPERTIES),
       sets=st.lists(st.tuples(st.sampled_from(CONFIG_KEYS + ["junk", "weak_train", "data.n_weak.x", ""]),
                               st.one_of(plausible, plausible, st.text(max_size=15), scalars.map(str),
                                         values.map(yaml.safe_dump))),
                     min_size=1, max_size=3),
       raw=st.lists(st.text(max_size=20), max_size=1))
def test_generated_set_overrides(prop, sets, raw, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("set")
    argv = ["study", "--properties", prop, "--preset", "smoke", "--out", str(tmp / "o"), "--dry-run"]
    for key, value in sets:
        argv += ["--set", f"{key}={value}"]
    for text in raw:
        argv += ["--set", text]
    rc, err = _run_case(argv)
    _check_outcome(rc, err, argv)


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def finished_run(smoke_run):
    return smoke_run("fairness", "--strategies", "no_tft")


DAMAGES = ["truncate", "empty", "garbage", "delete", "flip"]


@settings(max_examples=EXAMPLES or 24, **SETTINGS)
@given(which=st.sampled_from(["results.jsonl", "summary.json", "config.yaml", "run.json", "cache/*/preds.npz",
                              "cache/*/meta.json", "cache/*/weak_labels.npy"]),
       damage=st.sampled_from(DAMAGES), where=st.floats(0, 1), pick=st.integers(0, 10))
def test_report_of_a_damaged_run_folder(finished_run, which, damage, where, pick, tmp_path_factory):
    run = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(finished_run, run)
    targets = sorted(run.glob(which))
    if not targets:
        return
    target = targets[pick % len(targets)]
    data = target.read_bytes()
    cut = int(len(data) * where)
    if damage == "truncate":
        target.write_bytes(data[:cut])
    elif damage == "empty":
        target.write_bytes(b"")
    elif damage == "garbage":
        target.write_bytes(b"\x00\xffnot what it was\n" * 3)
    elif damage == "delete":
        target.unlink()
    else:  # one byte changed
        if data:
            target.write_bytes(data[:cut] + bytes([data[min(cut, len(data) - 1)] ^ 0x5A]) + data[cut + 1:])
    before = _snapshot(run)
    rc, err = _run_case(["report", str(run)])
    case = (which, damage, round(where, 3))
    _check_outcome(rc, err, case)
    if rc == 2:  # a refused report changes nothing
        assert _snapshot(run) == before, case
    else:  # a report that went through rewrote a full summary: its tests and validity are there
        summary = json.loads((run / "summary.json").read_text())
        assert summary.get("validity") and summary.get("wts_trust"), case
