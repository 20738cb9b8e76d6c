"""Shared test set-up: the offline data beside the checkout, no Hub, and factories for what many tests need (a
finished smoke run of a property, a tiny model saved as a user would), each made once per test session."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _env(tmp_path_factory):
    # Tests read the offline data copies beside the checkout and never touch the Hub.
    if not os.environ.get("W2STRUST_DATA"):  # unset or empty (the package reads an empty one as unset, too)
        os.environ["W2STRUST_DATA"] = str(SHARED_DATA)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    yield


@pytest.fixture(scope="session")
def data_dir() -> str:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the offline data copies are expected at {SHARED_DATA} (../shared/data beside the checkout)")
    return str(SHARED_DATA)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """``smoke_run(property, *cli_args)``: the output folder of ``w2strust run PROPERTY --preset smoke *cli_args``,
    run once per session for each distinct command. Treat it as read-only: copy it (shutil.copytree) to change it."""
    from w2strust.cli import main

    made: dict[tuple[str, ...], Path] = {}

    def run(prop: str, *args: str) -> Path:
        key = (prop, *args)
        if key not in made:
            out = tmp_path_factory.mktemp(f"{prop}-smoke") / "run"
            assert main(["run", prop, "--preset", "smoke", *args, "--out", str(out)]) == 0
            made[key] = out
        return made[key]

    return run


@pytest.fixture(scope="session")
def save_tiny():
    """``save_tiny(name, folder, causal=False)``: a registry tiny model (random init, seed 0) written by
    save_pretrained with its tokenizer, as a user would; returns the folder."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    from w2strust import models

    def save(name: str, folder, causal: bool = False) -> str:
        spec, tok = models.get_spec(name), models.load_tokenizer(name)
        torch.manual_seed(0)
        config = models.build._tiny_config(spec, len(tok), tok.pad_token_id)
        (AutoModelForCausalLM if causal else AutoModel).from_config(config).save_pretrained(folder)
        tok.save_pretrained(folder)
        return str(folder)

    return save
