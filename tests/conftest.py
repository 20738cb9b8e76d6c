import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _env(tmp_path_factory):
    # Tests read the offline data copies beside the checkout and never touch the Hub.
    os.environ.setdefault("W2STRUST_DATA", str(SHARED_DATA))
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    yield


@pytest.fixture(scope="session")
def data_dir() -> str:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the offline data copies are expected at {SHARED_DATA} (../shared/data beside the checkout)")
    return str(SHARED_DATA)
