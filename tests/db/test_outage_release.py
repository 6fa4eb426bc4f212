"""A chunk given back because the infrastructure failed (`release_chunk(refund=True)`) keeps its
attempt, even on its last one: it is re-queued, never failed, and its items get no error."""

from __future__ import annotations

from sqlalchemy import Engine, select, update
from test_leases import LEASE, chat_job, chunk_ids, claim, records, result_rows

from db.chunks import complete_chunk, release_chunk
from db.jobs import get_job
from db.models import chunks
from db.session import reading, writing


def test_an_outage_on_the_last_attempt_requeues_without_using_it(db: Engine) -> None:
    job_id = chat_job(db, 2)
    (chunk,) = chunk_ids(db, job_id)
    last = LEASE["max_attempts"]
    with writing(db) as conn:
        conn.execute(update(chunks).where(chunks.c.id == chunk).values(attempts=last - 1))
    lease = claim(db, chunk)
    assert lease is not None and lease.attempts == last
    assert release_chunk(db, lease, "OperationalError: server closed", max_attempts=last, refund=True) == "queued"
    with reading(db) as conn:
        row = conn.execute(select(chunks).where(chunks.c.id == chunk)).one()
    assert (row.status, row.attempts, row.lease_owner) == ("queued", last - 1, None)
    assert result_rows(db, job_id) == 0 and get_job(db, job_id).failed == 0

    again = claim(db, chunk, "w2")  # the last attempt is still there to run
    assert again is not None and again.attempts == last
    assert complete_chunk(db, again, records(db, again), None)
    assert get_job(db, job_id).status == "completed"


def test_an_items_failure_on_the_last_attempt_still_fails_the_chunk(db: Engine) -> None:
    job_id = chat_job(db, 2)
    (chunk,) = chunk_ids(db, job_id)
    with writing(db) as conn:
        conn.execute(update(chunks).where(chunks.c.id == chunk).values(attempts=LEASE["max_attempts"] - 1))
    lease = claim(db, chunk)
    assert lease is not None
    assert release_chunk(db, lease, "ValueError: bad item", max_attempts=LEASE["max_attempts"]) == "failed"
    assert get_job(db, job_id).failed == 2
