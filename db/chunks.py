"""Chunks of work and their leases: how every item gets scored exactly once.

A broker message only names a chunk; what happens to it is decided here by compare-and-set
updates, so duplicate or replayed messages are harmless:

- claim: `queued` (or `leased` with an expired lease) -> `leased` by one owner, at most
  `max_attempts` times, never for a cancelled job;
- complete: one transaction writes the results, moves the chunk `leased -> done` only if this
  owner still holds it, and advances the job's counts (else everything rolls back);
- release (scoring raised) puts it back to `queued`, or after the last attempt fails it: its items
  get error results, so every line still ends with an outcome;
- the reconciler's helpers find chunks the broker lost and leases whose worker died.

Multi-row transactions touch the job row before the chunk row, so they cannot deadlock each other.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, exists, func, or_, select, true, update

from db.jobs import finish_job, mark_running
from db.models import chunks, items, jobs
from db.results import insert_missing_results, result_row, upsert_results
from db.session import reading, retrying, utcnow, writing
from rmscore import failure_messages
from rmscore.formats import Item, Kind, item_from_payload
from rmscore.vocabulary import CHUNK_OPEN, JOB_ACTIVE

log = logging.getLogger(__name__)
SCORING_FAILED = "scoring_failed"


@dataclass(frozen=True)
class ChunkRef:
    """What a broker message needs: the chunk, its job, its model queue and its size."""

    id: int
    job_id: str
    model: str
    n_items: int


@dataclass(frozen=True)
class Lease:
    chunk_id: int
    job_id: str
    kind: Kind
    model: str
    first_line: int
    last_line: int
    n_items: int
    attempts: int  # including this one
    owner: str
    options: dict[str, Any]
    tenant: str = "local"  # the job's tenant: it scopes the score cache (`db.cache.cache_scope`)


class LeaseLost(Exception):
    """The chunk is no longer ours (the lease expired and another worker took it, or it was failed)."""


def new_owner(worker_name: str) -> str:
    """A lease owner unique to one claim, so a worker can never complete a lease it lost and re-took."""
    return f"{worker_name}/{uuid.uuid4().hex[:12]}"


def _job_stopped(job_id: Any) -> Any:
    return exists().where(jobs.c.id == job_id, jobs.c.status.in_(("cancelling", "cancelled")))


def _servable_by(model_refs: Collection[str]) -> ColumnElement[bool]:
    """A chunk that records no exact model, or one of `model_refs` (the refs of the weights a worker holds)."""
    return or_(chunks.c.model_ref.is_(None), chunks.c.model_ref.in_(sorted(model_refs)))


def claim_chunk(
    db: Engine,
    chunk_id: int,
    owner: str,
    *,
    lease_seconds: float,
    max_attempts: int,
    model_refs: Collection[str] | None = None,
) -> Lease | None:
    """Lease the chunk for `owner`; None when it is not ours to run (done, leased, cancelled, used up,
    or recorded for another model than `model_refs`, the refs of the model the worker serves)."""
    same_model = true() if model_refs is None else _servable_by(model_refs)

    def run() -> Lease | None:
        now = utcnow()
        with writing(db) as conn:
            res = conn.execute(
                update(chunks)
                .where(
                    chunks.c.id == chunk_id,
                    chunks.c.attempts < max_attempts,
                    same_model,
                    or_(
                        chunks.c.status == "queued",
                        and_(chunks.c.status == "leased", chunks.c.lease_expires_at < now),
                    ),
                    ~_job_stopped(chunks.c.job_id),
                )
                .values(
                    status="leased",
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    attempts=chunks.c.attempts + 1,
                    updated_at=now,
                )
            )
            if res.rowcount != 1:
                return None
            row = conn.execute(
                select(chunks, jobs.c.kind, jobs.c.options, jobs.c.tenant)
                .join(jobs, jobs.c.id == chunks.c.job_id)
                .where(chunks.c.id == chunk_id)
            ).one()
        return Lease(
            row.id,
            row.job_id,
            row.kind,
            row.model,
            row.first_line,
            row.last_line,
            row.n_items,
            row.attempts,
            owner,
            dict(row.options or {}),
            row.tenant,
        )

    lease = retrying(run, what=f"claiming chunk {chunk_id}")
    if lease is not None:
        mark_running(db, lease.job_id)  # its own transaction: a claim never waits on the job row
    return lease


def queued_for_model(db: Engine, chunk_id: int) -> tuple[ChunkRef, str] | None:
    """A queued chunk of an active job that records the exact model it must be scored with: its
    ref and that model (`model_ref`); None otherwise."""
    with reading(db) as conn:
        row = conn.execute(
            select(chunks.c.id, chunks.c.job_id, chunks.c.model, chunks.c.n_items, chunks.c.model_ref)
            .join(jobs, jobs.c.id == chunks.c.job_id)
            .where(
                chunks.c.id == chunk_id,
                chunks.c.status == "queued",
                chunks.c.model_ref.is_not(None),
                jobs.c.status.in_(JOB_ACTIVE),
            )
        ).first()
    return None if row is None else (ChunkRef(row.id, row.job_id, row.model, row.n_items), row.model_ref)


def work_left(db: Engine, model: str, model_refs: Collection[str]) -> int:
    """Chunks a worker of `model` serving `model_refs` may still be handed: queued or leased (a lease
    may expire and come back), of a job not stopped, and recorded for no model or for one of these.
    0 is a burst worker's signal that its queue is drained."""
    with reading(db) as conn:
        found = conn.execute(
            select(func.count())
            .select_from(chunks)
            .where(
                chunks.c.model == model,
                chunks.c.status.in_(CHUNK_OPEN),
                _servable_by(model_refs),
                ~_job_stopped(chunks.c.job_id),
            )
        ).scalar_one()
    return int(found)


def chunk_status(db: Engine, chunk_id: int) -> str | None:
    """The chunk's status (queued, leased, done, failed, cancelled); None for an unknown chunk."""
    with reading(db) as conn:
        return conn.execute(select(chunks.c.status).where(chunks.c.id == chunk_id)).scalar_one_or_none()


def load_items(db: Engine, lease: Lease) -> list[Item]:
    """The chunk's items in line order (lines that failed to parse are not part of any chunk)."""
    with reading(db) as conn:
        rows = conn.execute(
            select(items.c.line, items.c.custom_id, items.c.subset, items.c.payload)
            .where(
                items.c.job_id == lease.job_id,
                items.c.line.between(lease.first_line, lease.last_line),
                items.c.payload.is_not(None),
            )
            .order_by(items.c.line)
        ).all()
    if len(rows) != lease.n_items:
        raise RuntimeError(f"chunk {lease.chunk_id} should hold {lease.n_items} items, the database has {len(rows)}")
    return [item_from_payload(lease.kind, r.line, r.custom_id, r.subset, r.payload) for r in rows]


def _leased_by(owner: str) -> ColumnElement[bool]:
    """A chunk still leased to `owner`: every write of a lease holder is guarded on it, so a lease
    taken back (and perhaps claimed again by another worker) is never written through a stale one."""
    return and_(chunks.c.status == "leased", chunks.c.lease_owner == owner)


def complete_chunk(db: Engine, lease: Lease, records: list[dict[str, Any]], identity: dict[str, Any] | None) -> bool:
    """Store the records and mark the chunk done, atomically; False if the lease was lost."""
    if len(records) != lease.n_items:
        raise ValueError(f"chunk {lease.chunk_id}: {len(records)} records for {lease.n_items} items")
    bad = sum(1 for r in records if "error" in r)
    ok = len(records) - bad

    def run() -> bool:
        now = utcnow()
        rows = [result_row(lease.job_id, lease.model, r, identity, now) for r in records]
        try:
            with writing(db) as conn:
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == lease.job_id)
                    .values(completed=jobs.c.completed + ok, failed=jobs.c.failed + bad)
                )
                done = conn.execute(
                    update(chunks)
                    .where(chunks.c.id == lease.chunk_id, _leased_by(lease.owner))
                    .values(status="done", updated_at=now, error=None)
                )
                if done.rowcount != 1:
                    raise LeaseLost(str(lease.chunk_id))
                upsert_results(conn, rows)
                finish_job(conn, lease.job_id, now)
        except LeaseLost:
            return False
        return True

    # A retry after a commit whose reply was lost finds the chunk done and returns False: the
    # results are stored once either way.
    return retrying(run, what=f"storing chunk {lease.chunk_id}")


def release_chunk(db: Engine, lease: Lease, error: str, *, max_attempts: int, refund: bool = False) -> str:
    """Give a chunk back after scoring raised: 'queued' (to retry), 'failed' (attempts used up), or 'lost'.

    `refund`: the failure was the infrastructure's (the database or broker was unreachable), not the
    items': the chunk goes back to `queued` without using up the attempt, and is never failed.
    """

    def run() -> str:
        now = utcnow()
        mine = _leased_by(lease.owner)
        try:
            with writing(db) as conn:
                if lease.attempts >= max_attempts and not refund:
                    _fail_chunk(conn, lease.chunk_id, mine, error, now)
                    return "failed"
                res = conn.execute(
                    update(chunks)
                    .where(chunks.c.id == lease.chunk_id, mine)
                    .values(
                        status="queued",
                        lease_owner=None,
                        lease_expires_at=None,
                        attempts=chunks.c.attempts - (1 if refund else 0),
                        error=error[:4000],
                        enqueued_at=now,
                        updated_at=now,
                    )
                )
                return "queued" if res.rowcount == 1 else "lost"
        except LeaseLost:
            return "lost"

    return retrying(run, what=f"releasing chunk {lease.chunk_id}")


def renew_lease(db: Engine, lease: Lease, lease_seconds: float) -> bool:
    """Extend a lease still held (for chunks that take longer than expected)."""

    def run() -> bool:
        now = utcnow()
        with writing(db) as conn:
            res = conn.execute(
                update(chunks)
                .where(chunks.c.id == lease.chunk_id, _leased_by(lease.owner))
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
            )
            return res.rowcount == 1

    return retrying(run, what=f"renewing chunk {lease.chunk_id}")


def _lock_job_of_chunk(conn: Connection, chunk_id: int) -> None:
    """Take the job row's lock before touching the chunk (PostgreSQL; SQLite's writer lock covers it)."""
    job_id = select(chunks.c.job_id).where(chunks.c.id == chunk_id).scalar_subquery()
    conn.execute(select(jobs.c.id).where(jobs.c.id == job_id).with_for_update())


def _fail_chunk(conn: Connection, chunk_id: int, guard: Any, error: str, now: datetime) -> None:
    """End a chunk failed: each item gets a `scoring_failed` result. LeaseLost if `guard` fails."""
    c = conn.execute(select(chunks).where(chunks.c.id == chunk_id)).one()
    conn.execute(update(jobs).where(jobs.c.id == c.job_id).values(failed=jobs.c.failed + c.n_items))
    res = conn.execute(
        update(chunks)
        .where(chunks.c.id == chunk_id, guard)
        .values(status="failed", error=error[:4000], updated_at=now, lease_expires_at=None)
    )
    if res.rowcount != 1:
        raise LeaseLost(str(chunk_id))
    # Tenants read this message; the cause (exception text, a worker's host name) stays in the
    # chunk's `error` and the log (rmscore/failure_messages.py).
    message = failure_messages.chunk_failed(c.attempts, chunk_id)
    log.warning("chunk %s of job %s failed after %d attempt(s): %s", chunk_id, c.job_id, c.attempts, error)
    lines = conn.execute(
        select(items.c.line, items.c.custom_id, items.c.subset).where(
            items.c.job_id == c.job_id,
            items.c.line.between(c.first_line, c.last_line),
            items.c.payload.is_not(None),
        )
    ).all()
    rows = [
        result_row(
            c.job_id,
            c.model,
            {"line": r.line, "custom_id": r.custom_id, "error": {"code": SCORING_FAILED, "message": message}},
            None,
            now,
            subset=r.subset,
        )
        for r in lines
    ]
    insert_missing_results(conn, rows)
    finish_job(conn, c.job_id, now)


# --------------------------------------------------------------------------- reconciler helpers


@dataclass
class Reaped:
    requeued: list[ChunkRef]
    failed: int = 0
    cancelled: int = 0

    def add(self, action: ChunkRef | str | None) -> None:
        """Count what taking one lease back did: re-queued it, failed it (attempts used up), or
        found its job cancelled; None: someone else got there first."""
        if isinstance(action, ChunkRef):
            self.requeued.append(action)
        elif action == "failed":
            self.failed += 1
        elif action == "cancelled":
            self.cancelled += 1


def reap_expired_leases(db: Engine, *, max_attempts: int, now: datetime | None = None) -> Reaped:
    """Chunks whose worker stopped renewing (killed, lost): back to `queued`, or failed when used up.

    Each chunk is its own transaction, guarded on the lease still being expired, so a worker that
    completes at the same moment wins cleanly.
    """
    now = now or utcnow()
    with reading(db) as conn:
        ids = (
            conn.execute(
                select(chunks.c.id)
                .where(chunks.c.status == "leased", chunks.c.lease_expires_at < now)
                .order_by(chunks.c.id)
            )
            .scalars()
            .all()
        )
    out = Reaped([])
    for chunk_id in ids:
        out.add(retrying(functools.partial(_reap_one, db, chunk_id, now, max_attempts), what="reaping a lease"))
    return out


def _reap_one(db: Engine, chunk_id: int, now: datetime, max_attempts: int) -> ChunkRef | str | None:
    expired = and_(chunks.c.status == "leased", chunks.c.lease_expires_at < now)
    try:
        return _take_back_tx(db, chunk_id, expired, now, max_attempts, "lease expired after attempt {attempts}")
    except LeaseLost:  # rolled back: someone else moved the chunk first
        return None


def _take_back_tx(
    db: Engine, chunk_id: int, guard: Any, now: datetime, max_attempts: int, why: str
) -> ChunkRef | str | None:
    """Take a chunk away from a worker that stopped (if `guard` still holds): re-queue it, fail it when
    its attempts are used up, or cancel it when its job is being cancelled. `why` may name {attempts}."""
    with writing(db) as conn:
        _lock_job_of_chunk(conn, chunk_id)
        c = conn.execute(
            select(chunks, jobs.c.status.label("job_status"))
            .join(jobs, jobs.c.id == chunks.c.job_id)
            .where(chunks.c.id == chunk_id, guard)
        ).first()
        if c is None:
            return None
        if c.job_status in ("cancelling", "cancelled"):
            conn.execute(
                update(chunks)
                .where(chunks.c.id == chunk_id, guard)
                .values(status="cancelled", updated_at=now, error="job cancelled")
            )
            finish_job(conn, c.job_id, now)
            return "cancelled"
        lost = f"{why.format(attempts=c.attempts)}: the worker {c.lease_owner} stopped (killed or lost)"
        if c.attempts >= max_attempts:
            _fail_chunk(conn, chunk_id, guard, c.error or lost, now)
            return "failed"
        conn.execute(
            update(chunks)
            .where(chunks.c.id == chunk_id, guard)
            .values(
                status="queued",
                lease_owner=None,
                lease_expires_at=None,
                error=lost,
                enqueued_at=now,
                updated_at=now,
            )
        )
        return ChunkRef(c.id, c.job_id, c.model, c.n_items)


@dataclass(frozen=True)
class HeldLease:
    """A live (unexpired) lease, as the reconciler sees it when asking whether its worker still runs."""

    chunk_id: int
    owner: str

    @property
    def worker(self) -> str:
        """The worker name inside the owner string (`new_owner`): what its heartbeat key is named by."""
        return owner_worker(self.owner)


def owner_worker(owner: str) -> str:
    return owner.rsplit("/", 1)[0]


def leases_not_renewed(db: Engine, *, since: datetime) -> list[HeldLease]:
    """Unexpired leases whose worker has not claimed or renewed them since `since` (`updated_at`:
    a claim and every renewal set it, nothing else touches a leased chunk)."""
    with reading(db) as conn:
        rows = conn.execute(
            select(chunks.c.id, chunks.c.lease_owner)
            .where(chunks.c.status == "leased", chunks.c.updated_at < since, chunks.c.lease_owner.is_not(None))
            .order_by(chunks.c.id)
        ).all()
    return [HeldLease(r.id, r.lease_owner) for r in rows]


def reclaim_leases(db: Engine, held: list[HeldLease], *, since: datetime, max_attempts: int) -> Reaped:
    """Take back leases whose worker is gone (the caller checked its heartbeat), as the reaper does
    with expired ones: back to `queued`, or failed when used up.

    Guarded on the same owner still holding it without a renewal since `since`, so a worker that
    renews, completes or releases at the same moment wins, and a chunk is never taken twice.
    """
    out = Reaped([])
    now = utcnow()
    for lease in held:
        guard = and_(_leased_by(lease.owner), chunks.c.updated_at < since)

        def run(lease: HeldLease = lease, guard: Any = guard) -> ChunkRef | str | None:
            try:
                why = "worker gone during attempt {attempts} (no heartbeat holds its lease)"
                return _take_back_tx(db, lease.chunk_id, guard, now, max_attempts, why)
            except LeaseLost:
                return None

        out.add(retrying(run, what="reclaiming a lease"))
    return out


def queued_chunks(db: Engine, *, enqueued_before: datetime | None = None, job_id: str | None = None) -> list[ChunkRef]:
    """Queued chunks of active jobs (optionally only those last sent before a time), in id order."""
    q = (
        select(chunks.c.id, chunks.c.job_id, chunks.c.model, chunks.c.n_items)
        .join(jobs, jobs.c.id == chunks.c.job_id)
        .where(chunks.c.status == "queued", jobs.c.status.in_(JOB_ACTIVE))
        .order_by(chunks.c.id)
    )
    if enqueued_before is not None:
        q = q.where(or_(chunks.c.enqueued_at.is_(None), chunks.c.enqueued_at < enqueued_before))
    if job_id is not None:
        q = q.where(chunks.c.job_id == job_id)
    with reading(db) as conn:
        return [ChunkRef(*r) for r in conn.execute(q).all()]


def mark_enqueued(db: Engine, chunk_ids: list[int], now: datetime | None = None) -> None:
    now = now or utcnow()

    def run() -> None:
        with writing(db) as conn:
            for start in range(0, len(chunk_ids), 1000):
                conn.execute(
                    update(chunks)
                    .where(chunks.c.id.in_(chunk_ids[start : start + 1000]), chunks.c.status == "queued")
                    .values(enqueued_at=now)
                )

    if chunk_ids:
        retrying(run, what="marking chunks enqueued")


def finish_jobs(db: Engine) -> int:
    """Bring to their end every job whose chunks are all finished (normally done by the last chunk
    itself; this catches the rest). Queued chunks of cancelled jobs are cancelled. Returns jobs moved."""
    open_chunks = exists().where(chunks.c.job_id == jobs.c.id, chunks.c.status.in_(("queued", "leased")))
    with reading(db) as conn:
        candidates = (
            conn.execute(
                select(jobs.c.id).where(
                    or_(and_(jobs.c.status.in_(JOB_ACTIVE), ~open_chunks), jobs.c.status == "cancelling")
                )
            )
            .scalars()
            .all()
        )
    moved = 0
    for job_id in candidates:

        def run(job_id: str = job_id) -> bool:
            now = utcnow()
            with writing(db) as conn:
                # FOR UPDATE: the job row first, as every multi-row transaction here takes it.
                before = conn.execute(select(jobs.c.status).where(jobs.c.id == job_id).with_for_update()).scalar_one()
                if before == "cancelling":
                    conn.execute(
                        update(chunks)
                        .where(chunks.c.job_id == job_id, chunks.c.status == "queued")
                        .values(status="cancelled", updated_at=now, error="job cancelled")
                    )
                finish_job(conn, job_id, now)
                after = conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar_one()
            return bool(after != before)

        moved += retrying(run, what="finishing a job")
    return moved


def chunk_counts(db: Engine, job_id: str) -> dict[str, int]:
    """Chunks of a job by status (for status displays and tests)."""
    with reading(db) as conn:
        rows = conn.execute(
            select(chunks.c.status, func.count()).where(chunks.c.job_id == job_id).group_by(chunks.c.status)
        ).all()
    return {s: int(n) for s, n in rows}
