"""`store: true` after the scores are computed: a store that fails then never turns the answer into
a 5xx; the reply says `stored: false` and why, without the database's own text."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anyio
import pytest


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (RuntimeError("connection to db.internal:5432 failed: password authentication"), "store_failed"),
        ("mismatch", "idempotency_key_reused"),  # a concurrent request took the key first
    ],
)
def test_a_failed_store_keeps_the_scores_and_says_why(monkeypatch: pytest.MonkeyPatch, raised: Any, code: str) -> None:
    from api.routes import score
    from rmscore.errors import IdempotencyMismatch

    error = IdempotencyMismatch("this Idempotency-Key was already used") if raised == "mismatch" else raised

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(score, "store_online_job", fail)
    state = SimpleNamespace(db=None, settings=SimpleNamespace(max_items_per_job=10))
    got = anyio.run(score._store, state, "alice", [], {}, "tiny", None, None, None, None, "k", "f")
    assert got["stored"] is False and got["job_id"] is None
    assert got["store_error"]["code"] == code
    assert "db.internal" not in got["store_error"]["message"]
