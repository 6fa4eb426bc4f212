"""Tables: jobs, their items (one per input line), results (one per item and model) and chunks of work.

No foreign keys on purpose: a job's items are written in batches before its row, so a half-stored
upload is never visible as a job (see `db.jobs.create_job`).
Timestamps are naive UTC (`db.session.utcnow`). The declarative classes are named `…Row`: `Job`,
`Item` and `CachedScore` already name the views the code passes around (`db.jobs.JobInfo`,
`rmscore.formats.Item`, `db.cache.CachedScore`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# none_as_null: Python None is SQL NULL (not the JSON value null), so `IS NULL` finds it.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64 bits.
ChunkId = BigInteger().with_variant(Integer(), "sqlite")

# The statuses a job and a chunk go through are `rmscore.vocabulary.JobStatus` and `ChunkStatus`.


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONType, datetime: DateTime()}


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), default="local")
    kind: Mapped[str] = mapped_column(String(16))  # chat | pairwise | listwise
    model: Mapped[str] = mapped_column(String(128))  # short model name: the queue it is scored on
    status: Mapped[str] = mapped_column(String(16), default="queued")
    total: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)  # lines scored
    failed: Mapped[int] = mapped_column(Integer, default=0)  # lines that ended with an error
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    # `metadata` is taken on declarative classes; the column keeps the user-facing name.
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata")
    options: Mapped[dict[str, Any]]
    idempotency_key: Mapped[str | None] = mapped_column(String(256))
    # SHA-256 of the request that created the job (api/fingerprint.py); migration 0004. A retry with
    # the same idempotency key must carry the same request.
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)  # why the job failed, when it did
    # Listwise jobs: responses on the lines that parsed (`request_counts` counts lines); migration 0007.
    responses: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
        Index("ix_jobs_tenant_created", "tenant", "created_at", "id"),
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_tenant_status", "tenant", "status"),  # migration 0002: back-pressure per tenant
    )


class ItemRow(Base):
    __tablename__ = "items"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    custom_id: Mapped[str | None] = mapped_column(String(512))
    subset: Mapped[str | None] = mapped_column(String(200))
    # `ChatItem/PairItem.payload()`; NULL for a line that failed to parse (its error is in results).
    payload: Mapped[dict[str, Any] | None]
    content_hash: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_items_job_custom_id", "job_id", "custom_id"),)


class ResultRow(Base):
    __tablename__ = "results"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    # Copied from the item so score queries filter without a join.
    custom_id: Mapped[str | None] = mapped_column(String(512))
    subset: Mapped[str | None] = mapped_column(String(200))
    score: Mapped[float | None] = mapped_column(Float)
    chosen_score: Mapped[float | None] = mapped_column(Float)
    rejected_score: Mapped[float | None] = mapped_column(Float)
    correct: Mapped[bool | None] = mapped_column(Boolean)  # chosen_score > rejected_score
    num_tokens: Mapped[int | None] = mapped_column(Integer)
    truncated: Mapped[bool | None] = mapped_column(Boolean)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    model_identity: Mapped[dict[str, Any] | None]
    # True when every conversation's score came from the score cache (no model work); migration 0003.
    cached: Mapped[bool | None] = mapped_column(Boolean)
    # Listwise lines (migration 0007): every response's score in input order, the indices of the best
    # and worst, their scores (so summaries aggregate in SQL), and RewardBench 2's credit for a
    # labelled line (1/k when a correct response shares the top score with k-1 others, else 0).
    scores: Mapped[list[float] | None] = mapped_column(JSONType)
    best: Mapped[int | None] = mapped_column(Integer)
    worst: Mapped[int | None] = mapped_column(Integer)
    best_score: Mapped[float | None] = mapped_column(Float)
    worst_score: Mapped[float | None] = mapped_column(Float)
    credit: Mapped[float | None] = mapped_column(Float)
    scored_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_results_custom_id", "custom_id"),
        Index("ix_results_subset_score", "subset", "score"),
        Index("ix_results_score", "score"),
        Index("ix_results_job_subset_line", "job_id", "subset", "line"),  # migration 0002: scores by subset
    )


class ChunkRow(Base):
    __tablename__ = "chunks"

    id: Mapped[int] = mapped_column(ChunkId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))
    # The exact model (`rmscore.settings.model_ref`: absolute directory or hub id) the producer
    # resolved `model` to; a worker serving another model of the same name must not claim it.
    # NULL (chunks stored before migration 0004): any worker of the queue may. Migration 0004.
    model_ref: Mapped[str | None] = mapped_column(String(1024))
    first_line: Mapped[int] = mapped_column(Integer)
    last_line: Mapped[int] = mapped_column(Integer)
    n_items: Mapped[int] = mapped_column(Integer)  # items to score (lines that parsed) in the range
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(256))
    lease_expires_at: Mapped[datetime | None]
    enqueued_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_chunks_job_status", "job_id", "status"),
        Index("ix_chunks_status", "status", "lease_expires_at"),
    )


class ScoreCacheRow(Base):
    """One conversation's score under one model identity, in one scope (`db.cache`).

    The scope is the tenant whose job scored it, so a tenant can never learn from `cached: true`
    what another tenant scored; under `RMSCORE_CACHE_SCOPE=shared` it is `db.cache.SHARED_SCOPE`.
    Migration 0004 (before it: no scope, no model, and an identity that did not cover the weights).
    """

    __tablename__ = "score_cache"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    # sha256 of the identity (model id, revision, weights digest, dtype, max_length) and of the conversation.
    identity_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(128))  # the short model name, for stats and `cache clear --model`
    score: Mapped[float] = mapped_column(Float)
    num_tokens: Mapped[int] = mapped_column(Integer)
    truncated: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_score_cache_created", "created_at"),)  # pruning by age and by rows


# The Core tables the queries use. Declarative types `__table__` as a FromClause; it is a Table.
jobs = cast(Table, JobRow.__table__)
items = cast(Table, ItemRow.__table__)
results = cast(Table, ResultRow.__table__)
chunks = cast(Table, ChunkRow.__table__)
score_cache = cast(Table, ScoreCacheRow.__table__)
