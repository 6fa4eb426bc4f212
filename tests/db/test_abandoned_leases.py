"""A lease whose worker is gone is taken back long before it expires (worker/reconcile.py): no live
heartbeat names it and it was not renewed for `heartbeat_ttl`. Either signal alone keeps it, so a
worker that only lost Redis, or only lost its database, keeps its chunk; and whatever happens,
the old owner can never store the chunk once it was taken back.

Real Redis (this suite's database) and SQLite/PostgreSQL; heartbeats are written as workers write them.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from test_leases import chat_job, chunk_ids, claim, records, result_rows

from db.chunks import Lease, complete_chunk, leases_not_renewed, reclaim_leases, renew_lease
from db.jobs import get_job
from db.models import chunks
from db.session import reading, utcnow, writing
from rmscore import keys
from worker.reconcile import abandon_grace, reclaim_abandoned, reconcile_once, renew_interval


def age(db: Engine, chunk_id: int, seconds: float) -> None:
    """Make the lease look last claimed/renewed `seconds` ago (its 60 s expiry stays in the future)."""
    with writing(db) as conn:
        conn.execute(
            update(chunks).where(chunks.c.id == chunk_id).values(updated_at=utcnow() - timedelta(seconds=seconds))
        )


def beat(r: Any, worker: str, lease: Lease | None, **extra: Any) -> None:
    """A heartbeat as worker.runner.Heartbeat writes it (the fields that matter here)."""
    body = {"name": worker, "lease_owner": lease.owner if lease else None, **extra}
    r.set(keys.worker_heartbeat(worker), json.dumps(body), px=30_000)


def chunk_row(db: Engine, chunk_id: int) -> Any:
    with reading(db) as conn:
        return conn.execute(select(chunks).where(chunks.c.id == chunk_id)).one()


def test_defaults_renew_three_times_per_grace(broker: Any) -> None:
    settings, _, _ = broker
    assert abandon_grace(settings) == settings.heartbeat_ttl == 30
    assert renew_interval(settings) == 10
    assert settings.lease_seconds == 600  # the backstop, not what recovery waits for


def test_a_dead_workers_lease_is_taken_back_and_its_owner_cannot_store(db: Engine, broker: Any) -> None:
    settings, r, app = broker
    job_id = chat_job(db, 4)
    first, second = chunk_ids(db, job_id)
    dead = claim(db, first, "dead@host-cpu")
    assert dead is not None
    age(db, first, abandon_grace(settings) + 1)  # no heartbeat key at all: the worker is gone

    report = reconcile_once(db, r, app, settings, use_lock=False)
    assert report.requeued_abandoned == [first] and report.requeued_expired == []
    row = chunk_row(db, first)
    assert (row.status, row.attempts, row.lease_owner) == ("queued", 1, None)
    assert "worker gone during attempt 1" in row.error and dead.owner in row.error
    assert r.exists(keys.chunk_enqueued(first))  # re-sent to the broker

    rescuer = claim(db, first, "rescuer@host-cpu")
    assert rescuer is not None and rescuer.attempts == 2
    assert complete_chunk(db, rescuer, records(db, rescuer), None)
    assert not complete_chunk(db, dead, records(db, dead, -9.0), None)  # came back to life: too late
    assert not renew_lease(db, dead, 60)
    assert result_rows(db, job_id) == 2 and get_job(db, job_id).completed == 2
    assert chunk_row(db, second).status == "queued"  # untouched


def test_a_live_heartbeat_naming_the_lease_keeps_it(db: Engine, broker: Any) -> None:
    """The database may be down for this worker (no renewals): its heartbeat still says it holds it."""
    settings, r, _ = broker
    (chunk,) = chunk_ids(db, chat_job(db, 2))
    lease = claim(db, chunk, "busy@host-cpu")
    assert lease is not None
    age(db, chunk, abandon_grace(settings) * 10)
    beat(r, "busy@host-cpu", lease)
    assert reclaim_abandoned(db, r, settings) == ([], 0, 0)
    assert chunk_row(db, chunk).lease_owner == lease.owner


def test_a_heartbeat_naming_several_leases_keeps_each_and_only_those(db: Engine, broker: Any) -> None:
    """A worker's pipeline holds up to three chunks (worker/chunk_pipeline.py): its heartbeat names
    each in `lease_owners`. A lease of the same worker name it does not name (a previous incarnation's)
    is taken back."""
    settings, r, _ = broker
    job_id = chat_job(db, 6, chunk_size=2)
    on_device, prefetched, orphan = chunk_ids(db, job_id)
    leases = [claim(db, c, "busy@host-cpu") for c in (on_device, prefetched, orphan)]
    assert all(leases)
    for c in (on_device, prefetched, orphan):
        age(db, c, abandon_grace(settings) * 10)
    beat(r, "busy@host-cpu", leases[0], lease_owners=[leases[0].owner, leases[1].owner])  # type: ignore[union-attr]
    requeued, failed, cancelled = reclaim_abandoned(db, r, settings)
    assert [c.id for c in requeued] == [orphan] and (failed, cancelled) == (0, 0)
    assert [chunk_row(db, c).status for c in (on_device, prefetched)] == ["leased", "leased"]


def test_a_fresh_lease_is_kept_without_a_heartbeat(db: Engine, broker: Any) -> None:
    """Redis lost its keys (FLUSHALL, a restart) or the worker's Redis writes hiccup: it still renews."""
    settings, r, _ = broker
    (chunk,) = chunk_ids(db, chat_job(db, 2))
    lease = claim(db, chunk, "quiet@host-cpu")
    assert lease is not None
    age(db, chunk, abandon_grace(settings) - 5)
    assert reclaim_abandoned(db, r, settings) == ([], 0, 0)
    assert chunk_row(db, chunk).status == "leased"


def test_a_restarted_worker_of_the_same_name_does_not_keep_its_predecessors_lease(db: Engine, broker: Any) -> None:
    """compose restarts a crashed worker under the same name: its heartbeat names its own lease, or none."""
    settings, r, _ = broker
    (chunk,) = chunk_ids(db, chat_job(db, 2))
    lease = claim(db, chunk, "tiny@node1-cuda0")
    assert lease is not None
    age(db, chunk, abandon_grace(settings) + 1)
    beat(r, "tiny@node1-cuda0", None)  # the new incarnation, idle
    requeued, failed, cancelled = reclaim_abandoned(db, r, settings)
    assert [c.id for c in requeued] == [chunk] and (failed, cancelled) == (0, 0)


def test_a_heartbeat_from_an_older_worker_keeps_its_leases(db: Engine, broker: Any) -> None:
    """A rolling upgrade: a worker whose heartbeat has no `lease_owner` is not robbed (its lease expires)."""
    settings, r, _ = broker
    (chunk,) = chunk_ids(db, chat_job(db, 2))
    lease = claim(db, chunk, "old@host-cpu")
    assert lease is not None
    age(db, chunk, abandon_grace(settings) + 1)
    r.set(keys.worker_heartbeat("old@host-cpu"), json.dumps({"name": "old@host-cpu", "current_chunk": chunk}))
    assert reclaim_abandoned(db, r, settings) == ([], 0, 0)


def test_a_renewal_after_the_scan_wins(db: Engine, broker: Any) -> None:
    settings, _, _ = broker
    (chunk,) = chunk_ids(db, chat_job(db, 2))
    lease = claim(db, chunk, "slow@host-cpu")
    assert lease is not None
    age(db, chunk, 31)
    since = utcnow() - timedelta(seconds=30)
    stale = leases_not_renewed(db, since=since)
    assert [s.chunk_id for s in stale] == [chunk] and stale[0].worker == "slow@host-cpu"
    assert renew_lease(db, lease, 60)  # the worker was alive after all
    out = reclaim_leases(db, stale, since=since, max_attempts=3)
    assert out.requeued == [] and chunk_row(db, chunk).lease_owner == lease.owner
    assert complete_chunk(db, lease, records(db, lease), None)


def test_a_dead_workers_last_attempt_fails_the_chunk_with_every_line_accounted(db: Engine, broker: Any) -> None:
    settings, r, _ = broker
    job_id = chat_job(db, 2)
    (chunk,) = chunk_ids(db, job_id)
    with writing(db) as conn:
        conn.execute(update(chunks).where(chunks.c.id == chunk).values(attempts=settings.max_attempts - 1))
    assert claim(db, chunk, "dying@host-cpu") is not None
    age(db, chunk, abandon_grace(settings) + 1)
    assert reclaim_abandoned(db, r, settings)[1] == 1
    job = get_job(db, job_id)
    assert (job.status, job.failed, result_rows(db, job_id)) == ("failed", 2, 2)
