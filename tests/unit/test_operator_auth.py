"""`api.auth.authorize_operator`, the check in front of `/metrics` (the key paths run against real
processes in tests/api/test_api_trust.py; these are the ones that never reach the key store)."""

from __future__ import annotations

import pytest

from api.auth import KeyCache, authorize_operator
from rmscore.errors import Unauthorized

TOKEN = "a-scrape-token-of-enough-length"


def test_open_only_when_auth_is_disabled() -> None:
    authorize_operator(None, KeyCache(30), None, enabled=False, token=None)  # type: ignore[arg-type]
    with pytest.raises(Unauthorized):
        authorize_operator(None, KeyCache(30), None, enabled=True, token=TOKEN)  # type: ignore[arg-type]
    with pytest.raises(Unauthorized):
        authorize_operator(None, KeyCache(30), "Basic abc", enabled=True, token=TOKEN)  # type: ignore[arg-type]


def test_the_scrape_token_passes_without_a_key_lookup() -> None:
    # db=None: a key lookup would raise, so passing proves the token alone was enough.
    authorize_operator(None, KeyCache(30), f"Bearer {TOKEN}", enabled=True, token=TOKEN)  # type: ignore[arg-type]
