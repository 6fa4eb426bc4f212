"""Producing work = store, then enqueue: a job goes into the database, then its chunks to the broker.

Here in `db/` (not `worker/`) because every producer runs it — the API, `rmscore submit`, and the
workers' reconciler re-sending lost chunks — and none of them needs the model: `db/` may use the
shared core's broker (`rmscore.broker`), and the API and CLI may use `db/`. No torch here.
`store_and_enqueue` is the one sequence; `submit` and the API's `api.submission.store` both call it
with a `db.jobs.JobRequest` they build.

Each message names a chunk (`job=`, `chunk=`, `items=`, readable in Flower), never its payload.
It is published to the model's queue through Redis' default exchange (routing key = queue name),
which needs no binding table: a Redis that lost its data (FLUSHALL, restart without persistence)
takes the next message as surely as the first. After sending, the chunk's `chunk_enqueued` key
is set; the reconciler re-sends queued chunks whose key is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy import Engine

from db.chunks import ChunkRef, mark_enqueued, queued_chunks
from db.jobs import CreatedJob, JobRequest, create_job, resolve_model
from db.session import get_engine
from rmscore import keys
from rmscore.broker import get_app, get_redis
from rmscore.formats import Parsed, kind_arg
from rmscore.inputs import iter_parsed
from rmscore.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Long enough for any queue backlog; only a guard against keys of chunks nobody will ever take.
ENQUEUED_KEY_TTL_S = 7 * 24 * 3600
SEND_BATCH = 500
# A broker that does not answer after the job is stored: logged, not raised (the reconciler sends the chunks).
BROKER_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, KombuOperationalError, OSError)


def send_chunks(app: Celery, r: redis.Redis, refs: Sequence[ChunkRef]) -> int:
    """Publish one message per chunk and mark each as known to the broker. Returns messages sent.

    Send first, then set the key: a crash in between leaves a queued chunk without a key, which the
    reconciler re-sends (a duplicate message is skipped by the claim); the other order could leave
    a key for a message that was never sent, and the chunk would wait until the key expires.
    """
    sent = 0
    with app.producer_or_acquire() as producer:
        for start in range(0, len(refs), SEND_BATCH):
            batch = refs[start : start + SEND_BATCH]
            for ref in batch:
                queue = keys.score_queue(ref.model)
                app.send_task(
                    keys.TASK_SCORE_CHUNK,
                    kwargs={"job": ref.job_id, "chunk": ref.id, "items": ref.n_items},
                    queue=queue,
                    exchange="",
                    routing_key=queue,
                    producer=producer,
                    ignore_result=True,
                )
                sent += 1
            with r.pipeline(transaction=False) as pipe:
                for ref in batch:
                    pipe.set(keys.chunk_enqueued(ref.id), ref.job_id, ex=ENQUEUED_KEY_TTL_S)
                pipe.execute()
    return sent


def enqueue_job(db: Engine, job_id: str, *, app: Celery | None = None, r: redis.Redis | None = None) -> int:
    """Send every queued chunk of the job to its model's queue. Returns the number sent."""
    refs = queued_chunks(db, job_id=job_id)
    mark_enqueued(db, [c.id for c in refs])
    return send_chunks(app or get_app(), r or get_redis(), refs)


def submit(
    source: str | Path | IO[bytes] | Iterable[Parsed],
    *,
    kind: str = "auto",
    model: str | None = None,
    tenant: str = "local",
    chunk_size: int | None = None,
    metadata: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    settings: Settings | None = None,
    models: Sequence[str] | None = None,
    db: Engine | None = None,
    app: Celery | None = None,
    r: redis.Redis | None = None,
) -> CreatedJob:
    """Validate, store and enqueue a job: the producer's one call.

    `models` (several model names) scores every item with each, on each model's queue, for
    comparison (`db.compare`); the first is the job's own model unless `model` is given.
    `source` is a path or byte stream (JSONL, .jsonl.gz, or one .json document) read as
    `rmscore score` reads it, or already-parsed lines. Streams: memory stays flat on any size.
    """
    s = settings or get_settings()
    db = db or get_engine(s.database_url)
    short = resolve_model(models[0] if models and model is None else model, s)
    others = [resolve_model(m, s) for m in models or []]
    if isinstance(source, str | Path) or hasattr(source, "read"):
        parsed: Iterable[Parsed] = iter_parsed(
            source,  # type: ignore[arg-type]
            kind_arg(kind),
            **s.line_limits,
        )
    else:
        parsed = source
    request = JobRequest(
        model=short,
        kind=kind,
        tenant=tenant,
        chunk_size=chunk_size,
        metadata=metadata,
        options=options,
        idempotency_key=idempotency_key,
        models=others,
    )
    return store_and_enqueue(db, s, parsed, request, app=app, r=r)


def store_and_enqueue(
    db: Engine,
    settings: Settings,
    parsed: Iterable[Parsed],
    request: JobRequest,
    *,
    app: Celery | None = None,
    r: redis.Redis | None = None,
    tolerate: tuple[type[Exception], ...] = BROKER_ERRORS,
) -> CreatedJob:
    """Store the job `request` asks for (its models already resolved), then hand its chunks to the broker.

    Written once so every producer stores and sends the same way. Sending failures of the kinds in
    `tolerate` are logged, not raised: the job is stored and its chunks queued in the database, so
    the workers' reconciler sends them once the broker answers again, and failing here would invite
    a duplicate job. (The API tolerates any error after the store: an accepted job keeps its 202.)
    """
    # The one place a request meets the server's limits; `create_job` keeps plain keywords, which
    # is how the store's own tests and tools call it.
    created = create_job(
        db,
        parsed,
        model=request.model,
        kind=request.kind,
        tenant=request.tenant,
        chunk_size=request.chunk_size or settings.chunk_size,
        chunk_max_tokens=settings.chunk_max_tokens,
        metadata=request.metadata,
        options=request.options,
        idempotency_key=request.idempotency_key,
        max_items=settings.max_items_per_job,
        models=request.models,
        fingerprint=request.fingerprint,
        model_refs=settings.model_refs,  # the exact model each chunk must be scored with
    )
    if created.created and created.job.status == "queued":
        try:
            enqueue_job(db, created.job.id, app=app or get_app(settings), r=r or get_redis(settings.broker_url))
        except tolerate as exc:
            log.warning(
                "job %s stored, but the broker did not take its chunks (%s): the reconciler sends them once it is back",
                created.job.id,
                exc,
            )
    return created
