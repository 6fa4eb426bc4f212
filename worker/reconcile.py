"""The reconciler: the database can always bring a job to its end, whatever the broker forgot.

One pass (under a Redis lock, so a fleet runs one at a time):
1. leases that expired (worker killed, machine lost) go back to `queued` and are re-sent, or end
   failed after `max_attempts` with the error on their items;
2. queued chunks the broker no longer knows (their `chunk_enqueued` key is gone: FLUSHALL, a Redis
   restart without persistence) are re-sent;
3. jobs whose chunks have all ended are moved to their end state; `cancelling` -> `cancelled`;
4. at most once per `RMSCORE_CACHE_PRUNE_INTERVAL` across the fleet, the score cache is pruned to
   its bounds (`RMSCORE_CACHE_MAX_AGE`, `RMSCORE_CACHE_MAX_ROWS`; `db.cache.prune`).

Every step is a guarded compare-and-set, so two passes at once, or a pass racing a worker, are safe.
Every worker runs one in a background thread; `rmscore reconcile --once` runs one by hand.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import redis
from celery import Celery
from sqlalchemy import Engine

from db.chunks import ChunkRef, finish_jobs, mark_enqueued, queued_chunks, reap_expired_leases
from db.session import utcnow
from rmscore import keys
from rmscore.settings import Settings
from worker.enqueue import send_chunks

log = logging.getLogger(__name__)


def lost_grace(settings: Settings) -> float:
    """A queued chunk is only called lost once it was sent this long ago and still has no key: this
    covers the moment between a producer's commit and its send (three reconcile intervals, 2-30 s)."""
    return min(30.0, max(2.0, 3 * settings.reconcile_interval))


_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


@dataclass
class ReconcileReport:
    ran: bool = True  # False: another process held the lock
    requeued_expired: list[int] = field(default_factory=list)
    resent_lost: list[int] = field(default_factory=list)
    failed_chunks: int = 0
    cancelled_chunks: int = 0
    jobs_finished: int = 0
    cache_pruned: int = 0  # score cache rows dropped (too old, or beyond the row bound)

    def __bool__(self) -> bool:
        return bool(
            self.requeued_expired
            or self.resent_lost
            or self.failed_chunks
            or self.cancelled_chunks
            or self.jobs_finished
            or self.cache_pruned
        )

    def summary(self) -> str:
        if not self.ran:
            return "skipped: another reconciler holds the lock"
        return (
            f"re-queued {len(self.requeued_expired)} expired lease(s), re-sent {len(self.resent_lost)} lost "
            f"chunk(s), failed {self.failed_chunks}, cancelled {self.cancelled_chunks}, "
            f"finished {self.jobs_finished} job(s), pruned {self.cache_pruned} score cache row(s)"
        )


def lock_ttl(settings: Settings) -> int:
    return int(max(10, 3 * settings.reconcile_interval))


def missing_from_broker(r: redis.Redis, refs: list[ChunkRef]) -> list[ChunkRef]:
    lost: list[ChunkRef] = []
    for start in range(0, len(refs), 1000):
        batch = refs[start : start + 1000]
        with r.pipeline(transaction=False) as pipe:
            for ref in batch:
                pipe.exists(keys.chunk_enqueued(ref.id))
            present = pipe.execute()
        lost.extend(ref for ref, there in zip(batch, present, strict=True) if not there)
    return lost


def prune_cache(db: Engine, r: redis.Redis, settings: Settings, *, force: bool = False) -> int:
    """Prune the score cache to its bounds unless another pass did so within the prune interval
    (`force`: regardless). Returns the rows dropped."""
    gate = max(1, int(settings.cache_prune_interval))
    if not force and not r.set(keys.CACHE_PRUNE_GATE, "1", nx=True, ex=gate):
        return 0
    if force:
        r.set(keys.CACHE_PRUNE_GATE, "1", ex=gate)
    from db.cache import prune

    return prune(db, max_age_s=settings.cache_max_age, max_rows=settings.cache_max_rows).deleted


def reconcile_once(
    db: Engine,
    r: redis.Redis,
    app: Celery,
    settings: Settings,
    *,
    use_lock: bool = True,
    grace_s: float | None = None,
) -> ReconcileReport:
    token = uuid.uuid4().hex
    if use_lock and not r.set(keys.RECONCILE_LOCK, token, nx=True, ex=lock_ttl(settings)):
        return ReconcileReport(ran=False)
    try:
        report = ReconcileReport()
        reaped = reap_expired_leases(db, max_attempts=settings.max_attempts)
        report.failed_chunks, report.cancelled_chunks = reaped.failed, reaped.cancelled
        if reaped.requeued:
            send_chunks(app, r, reaped.requeued)
            report.requeued_expired = [c.id for c in reaped.requeued]

        now = utcnow()
        grace = lost_grace(settings) if grace_s is None else grace_s
        stale = queued_chunks(db, enqueued_before=now - timedelta(seconds=grace))
        lost = missing_from_broker(r, stale)
        if lost:
            mark_enqueued(db, [c.id for c in lost], now)
            send_chunks(app, r, lost)
            report.resent_lost = [c.id for c in lost]

        report.jobs_finished = finish_jobs(db)
        report.cache_pruned = prune_cache(db, r, settings, force=not use_lock)
        if report:
            log.info("reconcile: %s", report.summary())
        return report
    finally:
        if use_lock:
            r.eval(_RELEASE, 1, keys.RECONCILE_LOCK, token)


class Reconciler(threading.Thread):
    """Runs `reconcile_once` every `settings.reconcile_interval` seconds until stopped."""

    def __init__(self, db: Engine, r: redis.Redis, app: Celery, settings: Settings) -> None:
        super().__init__(name="rmscore-reconciler", daemon=True)
        self.db, self.r, self.app, self.settings = db, r, app, settings
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.settings.reconcile_interval):
            try:
                reconcile_once(self.db, self.r, self.app, self.settings)
            except Exception:  # noqa: BLE001 - a failed pass is retried next interval
                log.exception("reconcile pass failed; retrying in %ss", self.settings.reconcile_interval)

    def stop(self) -> None:
        self.stopping.set()
