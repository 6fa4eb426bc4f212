"""Accepting a job over HTTP: limits, back-pressure, then the producer's store-then-enqueue.

The job store and producer are the pipeline's (`db.jobs`, `db.producer`); this adds what only
a shared service needs: caps on metadata and queued work, and a broker outage that does not lose
an accepted job (its chunks stay queued in the database and the reconciler sends them later).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Engine

from api.config import ApiConfig
from db.jobs import (
    CreatedJob,
    JobRequest,
    check_kind,
    check_options,
    find_by_idempotency_key,
    replay,
    resolve_model,
)
from db.scores import queued_items
from rmscore import formats
from rmscore.errors import BadRequest, Overloaded, TooLarge
from rmscore.settings import Settings

log = logging.getLogger("api")
RETRY_AFTER_S = 30


def check_metadata(meta: dict[str, Any] | None, config: ApiConfig) -> dict[str, Any] | None:
    """Metadata is stored as given: bounded in size and depth, finite numbers only."""
    if meta is None:
        return None
    _check_depth(meta, config.max_metadata_depth)
    try:
        blob = json.dumps(meta, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise BadRequest(
            "metadata holds a number JSON cannot carry (NaN or infinity)", code="invalid_metadata"
        ) from None
    if len(blob.encode("utf-8", "surrogatepass")) > config.max_metadata_bytes:
        raise BadRequest(f"metadata is over {config.max_metadata_bytes:,} bytes", code="invalid_metadata")
    return meta


def _check_depth(value: Any, limit: int) -> None:
    """Depth, finite numbers, and text every database can store (keys too: PostgreSQL JSONB holds no NUL)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > limit:
            raise BadRequest(f"metadata is nested deeper than {limit} levels", code="invalid_metadata")
        if isinstance(v, str):
            _check_text(v)
        elif isinstance(v, dict):
            for k in v:
                _check_text(str(k))
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
        elif isinstance(v, float) and not math.isfinite(v):
            raise BadRequest(
                "metadata holds a number JSON cannot carry (NaN or infinity)", code="invalid_metadata"
            ) from None


def _check_text(value: str) -> None:
    problem = formats.text_problem(value)
    if problem is not None:
        raise BadRequest(f"a metadata string {problem}", code="invalid_metadata")


def check_backlog(db: Engine, config: ApiConfig, tenant: str, incoming: int = 0) -> None:
    """429 when the tenant's or everyone's unscored lines are at their cap (nothing accepted is dropped).

    A job bigger than the whole cap is still accepted when nothing waits, so no job is refused forever.
    """
    for cap, scope, who in (
        (config.max_queued_items_per_tenant, tenant, "your"),
        (config.max_queued_items, None, "the server's"),
    ):
        if cap is None:
            continue
        waiting = queued_items(db, tenant=scope)
        if waiting >= cap or (waiting and waiting + incoming > cap):
            raise Overloaded(
                f"{who} queue is full ({waiting:,} lines waiting, cap {cap:,}); retry later",
                retry_after=RETRY_AFTER_S,
            )


def within_backlog(
    parsed: Iterable[formats.Parsed], db: Engine, config: ApiConfig, tenant: str, every: int = 5000
) -> Iterator[formats.Parsed]:
    """`parsed`, counted against the backlog caps as it streams (an upload's size is unknown until its
    last line): 429 as soon as the lines so far do not fit, and once more before the job is stored."""
    n = 0
    for p in parsed:
        n += 1
        if n % every == 0:
            check_backlog(db, config, tenant, n)
        yield p
    check_backlog(db, config, tenant, n)


def earlier_job(db: Engine, tenant: str, idempotency_key: str | None, fingerprint: str | None) -> CreatedJob | None:
    """The job of an earlier submission with this key and the same request (`fingerprint`); None
    if the key is new; IdempotencyMismatch if it was used for a different request."""
    if idempotency_key is None:
        return None
    job = find_by_idempotency_key(db, tenant, idempotency_key)
    return replay(db, job, fingerprint) if job else None


def used_key(db: Engine, tenant: str, idempotency_key: str | None) -> bool:
    """Whether an earlier submission used this key (an upload checks its body against it next)."""
    return idempotency_key is not None and find_by_idempotency_key(db, tenant, idempotency_key) is not None


def parse_items(items: list[Any], kind: str | None, settings: Settings) -> Iterator[formats.Parsed]:
    """Request items as lines 1..n, with the same checks and errors as a file's lines.

    `kind="auto"`: the first valid item fixes the kind, as in a file; None: each item any kind.
    """
    return formats.iter_objects(
        items,
        formats.kind_arg(kind),
        **settings.line_limits,
    )


def prepare(
    settings: Settings,
    config: ApiConfig,
    *,
    kind: str,
    model: str | None,
    models: Sequence[str] | None,
    metadata: dict[str, Any] | None,
    options: dict[str, Any] | None,
    tenant: str,
    idempotency_key: str | None,
    fingerprint: str | None,
) -> JobRequest:
    """Validate what applies to the whole job before any line is read: the request `store` takes.

    `models` (more to compare with) and `model` are resolved to short names; without `model` the
    job's own is the first of `models`, else the server's default.
    """
    check_kind(kind)
    others = [resolve_model(m, settings) for m in models or []]
    return JobRequest(
        model=resolve_model(model or (others[0] if others else None), settings),
        kind=kind,
        tenant=tenant,
        metadata=check_metadata(metadata, config),
        options=check_options(options),
        idempotency_key=idempotency_key,
        models=others or None,
        fingerprint=fingerprint,
    )


def store(db: Engine, settings: Settings, parsed: Iterable[formats.Parsed], request: JobRequest) -> CreatedJob:
    """Store the job `request` asks for and hand its chunks to the broker.

    The sequence is the producer's (`db.producer.store_and_enqueue`, as `rmscore submit` runs it);
    what is the API's own is that no error after the store fails the request: the job is accepted,
    and the reconciler re-sends its chunks.
    """
    from db.producer import store_and_enqueue  # Celery and Redis clients load on the first job, not at start-up

    return store_and_enqueue(db, settings, parsed, request, tolerate=(Exception,))


def check_count(n: int, settings: Settings) -> None:
    if n > settings.max_items_per_job:
        raise TooLarge(f"a job holds at most {settings.max_items_per_job:,} lines", code="too_many_items")
