"""The reconciler: the database can always bring a job to its end, whatever the broker forgot.

One pass (under a Redis lock, so a fleet runs one at a time):
1. leases whose worker is gone go back to `queued` and are re-sent, or end failed after
   `max_attempts` with the error on their items. A worker is gone when no live heartbeat of it
   names the lease (killed, machine lost, hung, or it gave the chunk up while the database was
   down) and the lease has not been renewed for `heartbeat_ttl`: both signals must fail, so a
   worker whose Redis writes hiccup (it still renews in the database) or whose database is down
   (its heartbeat still names the lease) keeps its chunk. That takes a dead worker's chunk back
   within about `heartbeat_ttl` + `reconcile_interval` (~1 minute with defaults); the lease's own
   expiry (`lease_seconds`) stays as the backstop;
2. queued chunks the broker no longer knows (their `chunk_enqueued` key is gone: FLUSHALL, a Redis
   restart without persistence) are re-sent;
3. jobs whose chunks have all ended are moved to their end state; `cancelling` -> `cancelled`;
4. at most once per `RMSCORE_CACHE_PRUNE_INTERVAL` across the fleet, the score cache is pruned to
   its bounds (`RMSCORE_CACHE_MAX_AGE`, `RMSCORE_CACHE_MAX_ROWS`; `db.cache.prune`).

Every step is a guarded compare-and-set, so two passes at once, or a pass racing a worker, are safe.
Every worker runs one in a background thread; `rmscore reconcile --once` runs one by hand.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import redis
from celery import Celery
from sqlalchemy import Engine

from db.chunks import (
    ChunkRef,
    HeldLease,
    finish_jobs,
    leases_not_renewed,
    mark_enqueued,
    queued_chunks,
    reap_expired_leases,
    reclaim_leases,
)
from db.producer import send_chunks
from db.session import utcnow
from rmscore import keys
from rmscore.settings import Settings

log = logging.getLogger(__name__)


def abandon_grace(settings: Settings) -> float:
    """A lease not renewed for this long, with no heartbeat naming it, belongs to a worker that is gone.

    A live worker renews every third of this (`renew_interval`), so only a worker that also missed
    three renewals in a row can lose its chunk this way.
    """
    return settings.heartbeat_ttl


def renew_interval(settings: Settings) -> float:
    """How often a worker renews the lease in hand: three times per lease and per `abandon_grace`."""
    return min(settings.lease_seconds, abandon_grace(settings)) / 3


def held_by_live_worker(r: redis.Redis, leases: list[HeldLease]) -> set[str]:
    """The owners among `leases` that a live heartbeat names as the lease it holds now.

    A heartbeat from a worker that predates `lease_owner` in heartbeats counts as holding every
    lease of its name (a rolling upgrade must not rob old workers). A heartbeat names every lease
    its worker holds (`lease_owners`), or, from a worker before the chunk pipeline, its one
    (`lease_owner`).
    """
    names = sorted({lease.worker for lease in leases})
    if not names:
        return set()
    beats = r.mget([keys.worker_heartbeat(n) for n in names])
    holding: dict[str, set[str]] = {}
    legacy: set[str] = set()
    for name, raw in zip(names, beats, strict=True):
        if raw is None:
            continue  # no heartbeat: the worker stopped (or Redis lost it; its renewals decide then)
        try:
            beat = json.loads(raw)
        except ValueError:
            legacy.add(name)
            continue
        if not isinstance(beat, dict) or "lease_owner" not in beat:
            legacy.add(name)
        else:
            # `lease_owners`: every chunk in hand (worker/chunk_pipeline.py); a worker from before the
            # pipeline names its one lease in `lease_owner`.
            owners = beat.get("lease_owners")
            holding[name] = set(owners) if isinstance(owners, list) else {beat["lease_owner"]}
    return {lease.owner for lease in leases if lease.worker in legacy or lease.owner in holding.get(lease.worker, ())}


def reclaim_abandoned(db: Engine, r: redis.Redis, settings: Settings) -> tuple[list[ChunkRef], int, int]:
    """Take back leases of workers that are gone (see the module docstring): (re-queued, failed, cancelled)."""
    since = utcnow() - timedelta(seconds=abandon_grace(settings))
    stale = leases_not_renewed(db, since=since)
    if not stale:
        return [], 0, 0
    alive = held_by_live_worker(r, stale)
    gone = [lease for lease in stale if lease.owner not in alive]
    if not gone:
        return [], 0, 0
    log.warning(
        "reconcile: taking back %d lease(s) of stopped workers: %s",
        len(gone),
        ", ".join(f"chunk {g.chunk_id} ({g.owner})" for g in gone),
    )
    out = reclaim_leases(db, gone, since=since, max_attempts=settings.max_attempts)
    return out.requeued, out.failed, out.cancelled


def lost_grace(settings: Settings) -> float:
    """A queued chunk is only called lost once it was sent this long ago and still has no key: this
    covers the moment between a producer's commit and its send (three reconcile intervals, 2-30 s)."""
    return min(30.0, max(2.0, 3 * settings.reconcile_interval))


_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


@dataclass
class ReconcileReport:
    ran: bool = True  # False: another process held the lock
    requeued_expired: list[int] = field(default_factory=list)
    requeued_abandoned: list[int] = field(default_factory=list)  # leases of workers that are gone
    resent_lost: list[int] = field(default_factory=list)
    failed_chunks: int = 0
    cancelled_chunks: int = 0
    jobs_finished: int = 0
    cache_pruned: int = 0  # score cache rows dropped (too old, or beyond the row bound)

    def __bool__(self) -> bool:
        return bool(
            self.requeued_expired
            or self.requeued_abandoned
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
            f"re-queued {len(self.requeued_expired)} expired lease(s) and {len(self.requeued_abandoned)} of "
            f"stopped workers, re-sent {len(self.resent_lost)} lost "
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

        taken, failed, cancelled = reclaim_abandoned(db, r, settings)
        report.failed_chunks += failed
        report.cancelled_chunks += cancelled
        if taken:
            send_chunks(app, r, taken)
            report.requeued_abandoned = [c.id for c in taken]

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
