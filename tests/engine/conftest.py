from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout: real data sets for tests, never needed at run time."""
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    assert path.is_dir(), f"{path} is missing: tests need the project's shared data sets"
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from worker.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny", "tiny", seed=0)


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def engine(tiny_model_dir: Path):
    from worker.engine import Scorer

    return Scorer.load(str(tiny_model_dir))


@pytest.fixture(scope="session")
def card_pipeline(tiny_model_dir: Path):
    """The model card's scoring (`testkit.card_pipeline`)."""
    from testkit import card_pipeline

    return card_pipeline(tiny_model_dir)
