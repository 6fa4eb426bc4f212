"""An online request (`POST /v1/score` with `store: true`) kept as a completed job of its tenant.

The worker's online lane answers from Redis and never touches the database (it runs between
micro-batches of batch work); the API, which already holds the request, its tenant and the database,
stores the answer here afterwards. The job is like any other once stored: items, one result per
line (as the worker gave them: `cached`, `model_identity`, errors), and the job row with its counts,
written in one transaction so it is never visible half-stored. It has no chunks: nothing is queued.

Kind `text` is refused before scoring (`stored_kind`): reports, preference exports and best-of-n
read turns, which a rendered text has not; and a job has one kind, so mixed kinds are refused too.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from db.jobs import DEFAULT_TENANT, CreatedJob, find_by_idempotency_key, get_job, replay
from db.models import items, jobs, results
from db.results import iter_results, result_row
from db.session import reading, retrying, utcnow, writing
from rmscore.errors import InputError, TooLarge
from rmscore.formats import LineError, Parsed, content_hash, error_record


def stored_kind(parsed: Sequence[Parsed]) -> str:
    """The job kind of these lines, or InputError: text items, or items of more than one kind."""
    found = {p.kind for p in parsed if not isinstance(p, LineError)}
    if "text" in found:
        raise InputError(
            "store: true cannot keep text items (reports and exports need turns): send chat or pairwise "
            "items, or leave store out",
            code="text_not_stored",
        )
    if len(found) > 1:
        raise InputError(
            f"store: true keeps one job of one kind; these items are {', '.join(sorted(found))}",
            code="mixed_kinds",
        )
    return found.pop() if found else "chat"


def store_online_job(
    db: Engine,
    parsed: Sequence[Parsed],
    records: Mapping[int, dict[str, Any]],
    *,
    model: str,
    identity: dict[str, Any] | None,
    tenant: str = DEFAULT_TENANT,
    started_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    fingerprint: str | None = None,
    max_items: int | None = None,
) -> CreatedJob:
    """Store answered lines as a completed job: `parsed` (lines 1..n, as the request was parsed) and
    `records` (each line's outcome by line: the worker's record, or the parse error's record).

    Same rules as `db.jobs.create_job`: at most `max_items` lines (TooLarge), and an
    `idempotency_key` already used returns the earlier job when `fingerprint` matches, else
    IdempotencyMismatch (also when a concurrent request took the key first).
    """
    kind = stored_kind(parsed)
    if not parsed:
        raise InputError("the request holds no lines to store", code="empty_input")
    if max_items is not None and len(parsed) > max_items:
        raise TooLarge(f"a job holds at most {max_items:,} lines", code="too_many_items")
    if idempotency_key is not None:
        earlier = find_by_idempotency_key(db, tenant, idempotency_key)
        if earlier is not None:
            return replay(db, earlier, fingerprint)
    job_id = uuid.uuid4().hex
    now = utcnow()
    item_rows: list[dict[str, Any]] = []
    result_rows: list[dict[str, Any]] = []
    for p in parsed:
        if isinstance(p, LineError):
            payload, digest, subset, who = None, None, p.subset, None
            record = error_record(p.line, p.custom_id, p.code, p.message, p.subset)
        else:
            payload, digest, subset, who = p.payload(), content_hash(p), getattr(p, "subset", None), identity
            record = records[p.line]
        item_rows.append(
            {"job_id": job_id, "line": p.line, "custom_id": p.custom_id, "subset": subset,
             "payload": payload, "content_hash": digest}
        )  # fmt: skip
        result_rows.append(result_row(job_id, model, record, who, now,
                                      subset=subset))  # fmt: skip
    failed = sum(1 for r in result_rows if r["error_code"] is not None)
    scored = len(result_rows) - failed
    job_row: dict[str, Any] = {
        "id": job_id,
        "tenant": tenant,
        "kind": kind,
        "model": model,
        "status": "completed" if scored else "failed",
        "total": len(result_rows),
        "completed": scored,
        "failed": failed,
        "created_at": started_at or now,
        "started_at": started_at or now,
        "completed_at": now if scored else None,
        "failed_at": None if scored else now,
        "error": None if scored else "no line of the input could be scored",
        "metadata": metadata,
        "options": dict(options or {}),
        "idempotency_key": idempotency_key,
        "request_fingerprint": fingerprint,
    }

    def write() -> None:
        with writing(db) as conn:
            if conn.execute(select(jobs.c.id).where(jobs.c.id == job_id)).first():
                return  # a retry after the commit got through
            conn.execute(items.insert(), item_rows)
            conn.execute(results.insert(), result_rows)
            conn.execute(jobs.insert(), [job_row])

    try:
        retrying(write, what="storing the online request")
    except IntegrityError:
        # A concurrent request with the same key stored its job first (the transaction rolled back).
        earlier = find_by_idempotency_key(db, tenant, idempotency_key) if idempotency_key else None
        if earlier is None:
            raise
        return replay(db, earlier, fingerprint)
    return CreatedJob(get_job(db, job_id), created=True)


def stored_answer(db: Engine, job_id: str, tenant: str) -> tuple[str, list[dict[str, Any]], dict[str, Any] | None]:
    """(model, records, model identity) of a stored online request, to answer its replay with."""
    job = get_job(db, job_id, tenant=tenant)
    with reading(db) as conn:
        identity = conn.execute(
            select(results.c.model_identity)
            .where(results.c.job_id == job_id, results.c.model_identity.is_not(None))
            .limit(1)
        ).scalar()
    return job.model, list(iter_results(db, job_id, tenant=tenant)), identity
