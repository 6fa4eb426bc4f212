from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    assert path.is_dir(), f"{path} is missing: tests need the project's shared data sets"
    return path
