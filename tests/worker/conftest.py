"""Fixtures of the worker's model tests: the tiny model (the root conftest's `tiny_model_dir`)
loaded in this process, as the engine, its tokenizer and the model card's pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest


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
