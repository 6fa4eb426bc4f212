"""The score cache: a conversation already scored by the same model identity is not scored again.

Keyed by (scope, identity hash, conversation hash).
- The identity is the engine's (model id, revision, weights digest, dtype, max_length): the weights
  digest names the weights' content (`worker.weights`), so a model directory replaced in place is
  another identity, and anything else that changes a score changes one of the other fields.
- The scope is the tenant of the job that scored the conversation: a lookup only sees its own
  tenant's rows, so `cached: true` never tells a tenant what another one scored. An operator may
  share one cache across tenants (`RMSCORE_CACHE_SCOPE=shared`, scope `SHARED_SCOPE`).
Only scores are cached, never rejections, so a job's own overflow policy still decides what a
too-long conversation becomes (see `worker.cache`). Rows are written with insert-or-ignore: two
workers scoring the same conversation at once both succeed, and the first row stays.
The cache is bounded: `prune` drops rows older than `RMSCORE_CACHE_MAX_AGE` and the oldest beyond
`RMSCORE_CACHE_MAX_ROWS` (the reconciler runs it; `rmscore cache clear` drops rows by hand).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from db.models import score_cache
from db.session import reading, retrying, utcnow, writing
from rmscore.formats import Conversation

LOOKUP_BATCH = 500  # hashes per IN list: well under SQLite's bound on parameters
# The scope of a cache shared by every tenant. Tenant names start with a letter or digit
# (`db.api_keys.check_name`), so no tenant can ever be this scope.
SHARED_SCOPE = "*"
IDENTITY_FIELDS = ("model", "revision", "weights", "dtype", "max_length")


@dataclass(frozen=True, slots=True)
class CachedScore:
    score: float
    num_tokens: int
    truncated: bool


def identity_hash(identity: Mapping[str, Any]) -> str:
    """Hash of the fields that make two scores comparable (`worker.engine.Scorer.identity`)."""
    keep = {k: identity.get(k) for k in IDENTITY_FIELDS}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def conversation_hash(conversation: Conversation | str) -> str:
    """What the model sees of one conversation (as `rmscore.formats.content_hash` hashes an item); a
    pre-rendered text (a `str`) dumps as a JSON string, so it never shares a hash with turns."""
    blob = json.dumps(conversation, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_scope(tenant: str, mode: str) -> str:
    """The scope a job's lookups and stores use: its tenant, or the shared scope when the operator
    chose `RMSCORE_CACHE_SCOPE=shared`."""
    return SHARED_SCOPE if mode == "shared" else tenant


def lookup(db: Engine, scope: str, identity: str, hashes: Sequence[str]) -> dict[str, CachedScore]:
    """Cached scores of these conversations under this identity in this scope, by conversation hash."""
    wanted = sorted(set(hashes))
    found: dict[str, CachedScore] = {}
    c = score_cache.c
    for start in range(0, len(wanted), LOOKUP_BATCH):
        q = select(c.conversation_hash, c.score, c.num_tokens, c.truncated).where(
            c.scope == scope,
            c.identity_hash == identity,
            c.conversation_hash.in_(wanted[start : start + LOOKUP_BATCH]),
        )

        def run(q: Any = q) -> list[Any]:
            with reading(db) as conn:
                return list(conn.execute(q).all())

        for h, score, n, truncated in retrying(run, what="reading the score cache"):
            found[h] = CachedScore(float(score), int(n), bool(truncated))
    return found


def store(db: Engine, scope: str, identity: str, model: str, scores: Mapping[str, CachedScore]) -> None:
    """Remember these scores (first writer wins on a key two workers scored at once)."""
    if not scores:
        return
    now = utcnow()
    rows = [
        {
            "scope": scope,
            "identity_hash": identity,
            "conversation_hash": h,
            "model": model,
            "score": s.score,
            "num_tokens": s.num_tokens,
            "truncated": s.truncated,
            "created_at": now,
        }
        for h, s in scores.items()
    ]

    def run() -> None:
        with writing(db) as conn:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            for start in range(0, len(rows), LOOKUP_BATCH):
                stmt = insert(score_cache).on_conflict_do_nothing(
                    index_elements=["scope", "identity_hash", "conversation_hash"]
                )
                conn.execute(stmt, rows[start : start + LOOKUP_BATCH])

    retrying(run, what="writing the score cache")


# --------------------------------------------------------------------------- bounds, stats, clearing


def clear(
    db: Engine,
    *,
    model: str | None = None,
    older_than: timedelta | None = None,
    scope: str | None = None,
) -> int:
    """Delete cache rows (all, or those of `model`, older than `older_than`, in `scope`); returns how many."""
    c = score_cache.c
    q = delete(score_cache)
    if model is not None:
        q = q.where(c.model == model)
    if older_than is not None:
        q = q.where(c.created_at < utcnow() - older_than)
    if scope is not None:
        q = q.where(c.scope == scope)

    def run() -> int:
        with writing(db) as conn:
            return int(conn.execute(q).rowcount or 0)

    return retrying(run, what="clearing the score cache")


@dataclass(frozen=True, slots=True)
class PruneReport:
    expired: int = 0  # rows older than the age bound
    over_rows: int = 0  # the oldest rows beyond the row bound

    @property
    def deleted(self) -> int:
        return self.expired + self.over_rows


def prune(db: Engine, *, max_age_s: float, max_rows: int) -> PruneReport:
    """Enforce the bounds: drop rows older than `max_age_s` (0: no age bound), then the oldest rows
    while more than `max_rows` remain (0: no row bound). Afterwards at most `max_rows` rows are left
    (exactly that many if there were more).

    Rows keep the time they were first scored; a hit does not renew them, so a score is rescored
    at least once per `max_age_s` however often it is used.
    """
    expired = clear(db, older_than=timedelta(seconds=max_age_s)) if max_age_s > 0 else 0
    over = 0
    if max_rows > 0:
        c = score_cache.c
        # Rows in a total order, oldest first (ties on the timestamp, common as a chunk's rows share
        # one, broken by the key). The (max_rows + 1)-th newest row and every row before it go, so
        # exactly max_rows stay.
        order = (c.created_at, c.scope, c.identity_hash, c.conversation_hash)
        cutoff_q = select(*order).order_by(*(col.desc() for col in order)).offset(max_rows).limit(1)

        def run() -> int:
            with writing(db) as conn:
                cutoff = conn.execute(cutoff_q).first()
                if cutoff is None:
                    return 0
                return int(conn.execute(delete(score_cache).where(tuple_(*order) <= tuple(cutoff))).rowcount or 0)

        over = retrying(run, what="pruning the score cache")
    return PruneReport(expired, over)


@dataclass(frozen=True, slots=True)
class IdentityStats:
    model: str
    identity_hash: str
    rows: int
    scopes: int  # tenants (or the shared scope) holding rows of this identity
    oldest: datetime
    newest: datetime


@dataclass(frozen=True, slots=True)
class CacheStats:
    rows: int
    identities: list[IdentityStats]
    size_bytes: int | None  # on disk, tables and indexes; None where the database cannot say

    @property
    def oldest(self) -> datetime | None:
        return min((i.oldest for i in self.identities), default=None)

    @property
    def newest(self) -> datetime | None:
        return max((i.newest for i in self.identities), default=None)

    def as_dict(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return t.isoformat() + "Z" if t else None

        return {
            "rows": self.rows,
            "oldest": iso(self.oldest),
            "newest": iso(self.newest),
            "size_bytes": self.size_bytes,
            "identities": [
                {
                    "model": i.model,
                    "identity_hash": i.identity_hash,
                    "rows": i.rows,
                    "scopes": i.scopes,
                    "oldest": iso(i.oldest),
                    "newest": iso(i.newest),
                }
                for i in self.identities
            ],
        }


def rows_by_model(db: Engine) -> dict[str, int]:
    """Cache rows per model name (the API's `rmscore_score_cache_rows` gauge)."""
    c = score_cache.c
    with reading(db) as conn:
        return {m: int(n) for m, n in conn.execute(select(c.model, func.count()).group_by(c.model)).all()}


def stats(db: Engine) -> CacheStats:
    """Rows, per model identity (rows, scopes, oldest, newest), and the size on disk where known."""
    c = score_cache.c
    q = (
        select(
            c.model,
            c.identity_hash,
            func.count(),
            func.count(func.distinct(c.scope)),
            func.min(c.created_at),
            func.max(c.created_at),
        )
        .group_by(c.model, c.identity_hash)
        .order_by(c.model, c.identity_hash)
    )
    with reading(db) as conn:
        ids = [IdentityStats(m, h, int(n), int(s), lo, hi) for m, h, n, s, lo, hi in conn.execute(q).all()]
        size: int | None
        if conn.dialect.name == "postgresql":
            size = int(conn.execute(text("SELECT pg_total_relation_size('score_cache')")).scalar() or 0)
        else:
            try:  # SQLite's dbstat table, where the library was built with it
                size = int(
                    conn.execute(
                        text(
                            "SELECT SUM(pgsize) FROM dbstat WHERE name = 'score_cache' "
                            "OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = 'score_cache')"
                        )
                    ).scalar()
                    or 0
                )
            except Exception:  # noqa: BLE001 - no dbstat: the size is unknown, the rest still holds
                size = None
    return CacheStats(sum(i.rows for i in ids), ids, size)
