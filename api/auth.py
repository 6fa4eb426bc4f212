"""Who is calling: bearer API keys mapped to tenants, or one local tenant when auth is disabled.

Keys are checked against their slow hash (`db.api_keys.verify_key`); a verified key is then cached
in the process for a few seconds under the SHA-256 of the key, so a busy client does not pay the
hash on every request. Wrong keys are never cached: each costs a full check.

Checks of one key are single-flight: while a key is being verified, other requests with the same
key wait for that answer instead of running a scrypt each. Without it, the first burst of a busy
client (50 load-test clients submitting at once) and every cache expiry queued one ~140 ms scrypt
per request on the two key-check threads: seconds of latency for the first requests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from db.api_keys import verify_key
from db.jobs import DEFAULT_TENANT
from rmscore.errors import Forbidden, Unauthorized


@dataclass(frozen=True)
class Caller:
    tenant: str
    admin: bool = False
    key_id: str | None = None

    @property
    def scope(self) -> str | None:
        """The tenant reads are limited to; None for admin keys, which see every tenant."""
        return None if self.admin else self.tenant


LOCAL = Caller(DEFAULT_TENANT)


class _Flight:
    """One verification in progress: its waiters block on `done` and read `caller` (None: refused)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.caller: Caller | None = None
        self.ok = False  # False also when the check raised: waiters then check for themselves


class KeyCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[bytes, tuple[Caller, float]] = {}
        self._flights: dict[bytes, _Flight] = {}

    def get(self, digest: bytes) -> Caller | None:
        with self._lock:
            hit = self._entries.get(digest)
            if hit is None:
                return None
            if hit[1] < time.monotonic():
                del self._entries[digest]
                return None
            return hit[0]

    def put(self, digest: bytes, caller: Caller) -> None:
        with self._lock:
            if len(self._entries) > 10_000:  # bounded: drop everything rather than grow
                self._entries.clear()
            self._entries[digest] = (caller, time.monotonic() + self.ttl)

    def verify_once(self, digest: bytes, check: Callable[[], Caller | None]) -> Caller | None:
        """`check()`'s answer for this key, run by one thread at a time per key: a thread that finds
        a check of the same key in flight waits for its answer. A verified caller is cached; a
        refusal is not (the next request checks again), but the requests that waited share it. If
        the check raised (the database went away), each waiter runs its own check."""
        with self._lock:
            flight = self._flights.get(digest)
            leader = flight is None
            if flight is None:
                flight = self._flights[digest] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.ok:
                return flight.caller
            caller = check()
            if caller is not None:
                self.put(digest, caller)
            return caller
        try:
            flight.caller = check()
            flight.ok = True
            if flight.caller is not None:
                self.put(digest, flight.caller)
            return flight.caller
        finally:
            with self._lock:
                del self._flights[digest]
            flight.done.set()


def bearer_token(header: str | None) -> str:
    """The key in `Bearer <key>`, or the password of HTTP Basic (`Basic base64(user:key)`, any user):
    clients that take only a URL (OpenRLHF's `--remote_rm_url`) send a key as `http://rm:KEY@host/...`."""
    if not header:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() == "basic" and token:
        token = _basic_password(token)
    elif scheme.lower() != "bearer":
        token = ""
    if not token:
        raise Unauthorized("the Authorization header must be 'Bearer <key>'", code="invalid_api_key")
    return token


def _basic_password(credentials: str) -> str:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]


def known_caller(cache: KeyCache, header: str | None, *, enabled: bool) -> Caller | None:
    """The caller when that needs no slow check (auth disabled, or a key verified lately); None when
    the key must be verified. Raises Unauthorized for a missing or malformed header. Cheap enough
    for the event loop."""
    if not enabled:
        return LOCAL
    token = bearer_token(header)
    return cache.get(hashlib.sha256(token.encode("utf-8", "replace")).digest())


def authenticate(db: Engine, cache: KeyCache, header: str | None, *, enabled: bool) -> Caller:
    caller = known_caller(cache, header, enabled=enabled)
    if caller is not None:
        return caller
    token = bearer_token(header)
    digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()

    def check() -> Caller | None:
        # A hit on the cache first: the flight this thread waited for may just have filled it.
        hit = cache.get(digest)
        if hit is not None:
            return hit
        info = verify_key(db, token)
        return None if info is None else Caller(info.tenant, info.admin, info.id)

    caller = cache.verify_once(digest, check)
    if caller is None:
        # Same message for unknown, wrong and revoked keys: nothing to learn from the answer.
        raise Unauthorized("invalid API key", code="invalid_api_key")
    return caller


def authorize_operator(db: Engine, cache: KeyCache, header: str | None, *, enabled: bool, token: str | None) -> None:
    """Operator endpoints (`/metrics`): the scrape `token` (RMSCORE_METRICS_TOKEN) or an admin key.

    Their numbers span every tenant, so a tenant key gets 403. With auth disabled (one local
    tenant, loopback only) they are open, like everything else.
    """
    if not enabled:
        return
    presented = bearer_token(header)
    if token is not None and hmac.compare_digest(presented.encode("utf-8", "replace"), token.encode()):
        return
    if not authenticate(db, cache, header, enabled=True).admin:
        raise Forbidden("this endpoint needs an admin API key or the metrics token", code="admin_required")
