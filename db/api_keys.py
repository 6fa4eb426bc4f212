"""API keys: create, verify, list, revoke. Only a slow salted hash of each key is stored.

A key reads `rk_<id>_<secret>`: the id (16 hex) finds the row, the secret is checked against
`scrypt(secret, salt)` in constant time. The plain key is shown once, at creation, and never stored
or logged. Each key belongs to a tenant (whose jobs it sees); an admin key sees every tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Boolean, DateTime, Engine, Row, String, Table, select, update
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base
from db.session import reading, retrying, utcnow, writing
from rmscore.errors import BadRequest, NotFound

PREFIX = "rk_"
_ID_HEX = 16
_KEY_RE = re.compile(rf"^{PREFIX}([0-9a-f]{{{_ID_HEX}}})_([A-Za-z0-9_-]{{20,128}})$")
# scrypt at n=2^14, r=8: ~16 MiB and tens of milliseconds a check; the API caches verified keys.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
# Hash of a key no row has: a miss costs as much as a hit, so timing does not tell ids apart.
_DUMMY_SALT = b"rmscore-no-such-key"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(_ID_HEX), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(64))
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    salt: Mapped[str] = mapped_column(String(64))  # hex
    key_hash: Mapped[str] = mapped_column(String(128))  # hex scrypt(secret, salt)
    created_at: Mapped[datetime] = mapped_column(DateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(), nullable=True)


api_keys = cast(Table, ApiKey.__table__)  # declarative types it as a FromClause; it is a Table


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    tenant: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None


def _hash(secret: str, salt: bytes) -> str:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT).hex()


def check_name(value: str, what: str) -> str:
    if not _NAME_RE.match(value):
        raise BadRequest(
            f"{what} {value!r} must be 1-64 letters, digits or . _ @ -, starting with a letter or digit",
            code="invalid_name",
        )
    return value


def create_key(db: Engine, name: str, *, tenant: str | None = None, admin: bool = False) -> tuple[str, KeyInfo]:
    """A new key for `tenant` (default: `name`). Returns (the plain key — shown once, never stored, info)."""
    check_name(name, "key name")
    tenant = check_name(tenant or name, "tenant")
    key_id = secrets.token_hex(_ID_HEX // 2)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    info = KeyInfo(key_id, name, tenant, admin, utcnow(), None)
    row = {
        "id": key_id,
        "name": name,
        "tenant": tenant,
        "admin": admin,
        "salt": salt.hex(),
        "key_hash": _hash(secret, salt),
        "created_at": info.created_at,
        "revoked_at": None,
    }

    def run() -> None:
        with writing(db) as conn:
            conn.execute(api_keys.insert(), [row])

    retrying(run, what="storing the key")
    return f"{PREFIX}{key_id}_{secret}", info


def verify_key(db: Engine, presented: str) -> KeyInfo | None:
    """The key's info when `presented` is a live key; None otherwise (malformed, unknown, revoked, wrong)."""
    m = _KEY_RE.match(presented)
    if m is None:
        return None
    key_id, secret = m.groups()
    with reading(db) as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
    if row is None:
        _hash(secret, _DUMMY_SALT)
        return None
    ok = hmac.compare_digest(_hash(secret, bytes.fromhex(row.salt)), row.key_hash)
    if not ok or row.revoked_at is not None:
        return None
    return _info(row)


def _info(row: Row[Any]) -> KeyInfo:
    return KeyInfo(row.id, row.name, row.tenant, bool(row.admin), row.created_at, row.revoked_at)


def list_keys(db: Engine) -> list[KeyInfo]:
    with reading(db) as conn:
        rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)).all()
    return [_info(r) for r in rows]


def revoke_key(db: Engine, key_id: str) -> KeyInfo:
    """Revoke by id (the `rk_<id>_` part); revoking twice is a no-op."""

    def run() -> KeyInfo:
        with writing(db) as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        if row is None:
            raise NotFound(f"no API key {key_id!r}", code="key_not_found")
        return _info(row)

    return retrying(run, what="revoking the key")
