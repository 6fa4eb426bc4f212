"""`rmscore up` / `rmscore demo` start Flower with credentials: generated ones (shown beside the URL)
unless RMSCORE_FLOWER_BASIC_AUTH is set, and never FLOWER_UNAUTHENTICATED_API."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmscore.settings import get_settings
from rmscore.stack import Stack


@pytest.fixture(autouse=True)
def _no_configured_flower_auth(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env with settings in it
    monkeypatch.delenv("RMSCORE_FLOWER_BASIC_AUTH", raising=False)
    get_settings.cache_clear()


def test_the_stack_generates_fresh_flower_credentials_when_none_are_configured() -> None:
    first, second = Stack(model="m", env={}), Stack(model="m", env={})
    env = first._flower_env()
    user, _, password = env["RMSCORE_FLOWER_BASIC_AUTH"].partition(":")
    assert user == "rmscore" and len(password) >= 20
    assert second._flower_env()["RMSCORE_FLOWER_BASIC_AUTH"] != env["RMSCORE_FLOWER_BASIC_AUTH"]
    assert "FLOWER_UNAUTHENTICATED_API" not in env
    assert first.flower_auth_generated and password in first.flower_login


def test_configured_flower_credentials_are_used_and_not_printed() -> None:
    stack = Stack(model="m", env={"RMSCORE_FLOWER_BASIC_AUTH": "ops:Secret-123"})
    assert stack._flower_env()["RMSCORE_FLOWER_BASIC_AUTH"] == "ops:Secret-123"
    assert not stack.flower_auth_generated
    assert "ops" in stack.flower_login and "Secret-123" not in stack.flower_login
