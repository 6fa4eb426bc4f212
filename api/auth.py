"""Who is calling: bearer API keys mapped to tenants, or one local tenant when auth is disabled.

Keys are checked against their slow hash (`db.api_keys.verify_key`); a verified key is then cached
in the process for a few seconds under the SHA-256 of the key, so a busy client does not pay the
hash on every request. Wrong keys are never cached: each costs a full check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
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


class KeyCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[bytes, tuple[Caller, float]] = {}

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
    info = verify_key(db, token)
    if info is None:
        # Same message for unknown, wrong and revoked keys: nothing to learn from the answer.
        raise Unauthorized("invalid API key", code="invalid_api_key")
    caller = Caller(info.tenant, info.admin, info.id)
    cache.put(digest, caller)
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
