"""The score cache: a conversation already scored by the same model identity is not scored again.

Keyed by (identity hash, conversation hash). The identity is the engine's (model id, revision,
dtype, max_length): anything else that changes a score changes one of those. Only scores are
cached, never rejections, so a job's own overflow policy still decides what a too-long
conversation becomes (see `worker.cache`). Rows are written with insert-or-ignore: two workers
scoring the same conversation at once both succeed, and the first row stays.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from db.models import score_cache
from db.session import reading, retrying, utcnow, writing
from rmscore.formats import Conversation

LOOKUP_BATCH = 500  # hashes per IN list: well under SQLite's bound on parameters


@dataclass(frozen=True, slots=True)
class CachedScore:
    score: float
    num_tokens: int
    truncated: bool


def identity_hash(identity: Mapping[str, Any]) -> str:
    """Hash of the fields that make two scores comparable (`worker.engine.Engine.identity`)."""
    keep = {k: identity.get(k) for k in ("model", "revision", "dtype", "max_length")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def conversation_hash(conversation: Conversation) -> str:
    """What the model sees of one conversation (as `rmscore.formats.content_hash` hashes an item)."""
    blob = json.dumps(conversation, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def lookup(db: Engine, identity: str, hashes: Sequence[str]) -> dict[str, CachedScore]:
    """Cached scores of these conversations under this identity, by conversation hash."""
    wanted = sorted(set(hashes))
    found: dict[str, CachedScore] = {}
    c = score_cache.c
    for start in range(0, len(wanted), LOOKUP_BATCH):
        q = select(c.conversation_hash, c.score, c.num_tokens, c.truncated).where(
            c.identity_hash == identity, c.conversation_hash.in_(wanted[start : start + LOOKUP_BATCH])
        )

        def run(q: Any = q) -> list[Any]:
            with reading(db) as conn:
                return list(conn.execute(q).all())

        for h, score, n, truncated in retrying(run, what="reading the score cache"):
            found[h] = CachedScore(float(score), int(n), bool(truncated))
    return found


def store(db: Engine, identity: str, scores: Mapping[str, CachedScore]) -> None:
    """Remember these scores (first writer wins on a key two workers scored at once)."""
    if not scores:
        return
    now = utcnow()
    rows = [
        {
            "identity_hash": identity,
            "conversation_hash": h,
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
                stmt = insert(score_cache).on_conflict_do_nothing(index_elements=["identity_hash", "conversation_hash"])
                conn.execute(stmt, rows[start : start + LOOKUP_BATCH])

    retrying(run, what="writing the score cache")
