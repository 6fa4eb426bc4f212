"""`api.auth.authenticate`: concurrent checks of one key run its slow hash once (single-flight).

Without it, a burst of requests with a key not yet cached (50 load-test clients starting at once,
or every cache expiry) queued one scrypt each on the two key-check threads: seconds of latency.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

import api.auth
from api.auth import Caller, KeyCache, authenticate
from rmscore.errors import Unauthorized

HEADER = "Bearer rk_0123456789abcdef_a-secret-of-enough-length"


def run_concurrently(n: int, cache: KeyCache, release: threading.Event, entered: threading.Event) -> list[Any]:
    """`n` threads authenticate the same key; the first check holds until the others have started."""
    out: list[Any] = [None] * n

    def call(i: int) -> None:
        try:
            out[i] = authenticate(None, cache, HEADER, enabled=True)  # type: ignore[arg-type]
        except (Unauthorized, OSError) as exc:
            out[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    threads[0].start()
    assert entered.wait(30)  # the first check is in flight; the rest arrive while it is
    for t in threads[1:]:
        t.start()
    release.set()
    for t in threads:
        t.join(30)
    return out


@pytest.mark.parametrize("valid", [True, False])
def test_one_slow_check_serves_every_concurrent_request(monkeypatch: pytest.MonkeyPatch, valid: bool) -> None:
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def verify_key(_db: Any, token: str) -> Any:
        calls.append(token)
        entered.set()
        release.wait(30)
        return SimpleNamespace(tenant="t1", admin=False, id="k1") if valid else None

    monkeypatch.setattr(api.auth, "verify_key", verify_key)
    cache = KeyCache(30)
    out = run_concurrently(20, cache, release, entered)
    if valid:
        assert out == [Caller("t1", False, "k1")] * 20
        assert len(calls) == 1
    else:
        assert all(isinstance(x, Unauthorized) for x in out)
        # A refusal is shared with the requests that waited for it, never cached: each later one checks.
        n = len(calls)
        with pytest.raises(Unauthorized):
            authenticate(None, cache, HEADER, enabled=True)  # type: ignore[arg-type]
        assert len(calls) == n + 1


def test_a_failed_check_lets_each_waiter_check_for_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def verify_key(_db: Any, token: str) -> Any:
        calls.append(token)
        if len(calls) == 1:  # the first check: the database went away
            entered.set()
            release.wait(30)
            raise OSError("database unreachable")
        return SimpleNamespace(tenant="t1", admin=False, id="k1")

    monkeypatch.setattr(api.auth, "verify_key", verify_key)
    out = run_concurrently(5, KeyCache(30), release, entered)
    assert isinstance(out[0], OSError)
    assert out[1:] == [Caller("t1", False, "k1")] * 4
