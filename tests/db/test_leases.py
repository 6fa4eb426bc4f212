"""Exactly-once through leases: claim, complete, release, fail, expire, cancel (SQLite and PostgreSQL).

Records stand in for the engine here (any float will do); the pipeline suite runs the real model.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update

from db.chunks import (
    SCORING_FAILED,
    Lease,
    chunk_counts,
    claim_chunk,
    complete_chunk,
    finish_jobs,
    load_items,
    new_owner,
    queued_chunks,
    reap_expired_leases,
    release_chunk,
    renew_lease,
)
from db.jobs import cancel_job, create_job, get_job
from db.models import chunks, results
from db.results import iter_results, job_accuracy
from db.session import reading, utcnow, writing
from rmscore import failure_messages
from rmscore.formats import ChatItem, chat_record, error_record, pair_record, parse_object

LEASE = dict(lease_seconds=60, max_attempts=3)


def chat_job(db: Engine, n: int, chunk_size: int = 2) -> str:
    rows = [{"custom_id": f"c{i}", "prompt": f"q{i}", "response": "a"} for i in range(1, n + 1)]
    return create_job(
        db, [parse_object(r, i) for i, r in enumerate(rows, 1)], model="tiny", chunk_size=chunk_size
    ).job.id


def pair_job(db: Engine, subsets: list[str]) -> str:
    rows = [
        {"custom_id": f"p{i}", "prompt": "q", "chosen": "c", "rejected": "r", "subset": s}
        for i, s in enumerate(subsets, 1)
    ]
    return create_job(db, [parse_object(r, i) for i, r in enumerate(rows, 1)], model="tiny", chunk_size=2).job.id


def chunk_ids(db: Engine, job_id: str) -> list[int]:
    with reading(db) as conn:
        return list(conn.execute(select(chunks.c.id).where(chunks.c.job_id == job_id).order_by(chunks.c.id)).scalars())


def records(db: Engine, lease: Lease, score: float = 1.5) -> list[dict[str, Any]]:
    out = []
    for item in load_items(db, lease):
        if isinstance(item, ChatItem):
            out.append(chat_record(item.line, item.custom_id, score + item.line, 7, False))
        else:
            out.append(pair_record(item.line, item.custom_id, item.subset, score + item.line, score, False))
    return out


def claim(db: Engine, chunk_id: int, who: str = "w1", **kw: Any) -> Lease | None:
    return claim_chunk(db, chunk_id, new_owner(who), **{**LEASE, **kw})


def result_rows(db: Engine, job_id: str) -> int:
    with reading(db) as conn:
        return int(
            conn.execute(select(func.count()).select_from(results).where(results.c.job_id == job_id)).scalar_one()
        )


def expire(db: Engine, chunk_id: int) -> None:
    with writing(db) as conn:
        conn.execute(
            update(chunks).where(chunks.c.id == chunk_id).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def test_a_chunk_is_claimed_once_and_completed_once(db: Engine) -> None:
    job_id = chat_job(db, 3)
    first, second = chunk_ids(db, job_id)
    lease = claim(db, first)
    assert lease is not None and lease.attempts == 1 and (lease.first_line, lease.last_line) == (1, 2)
    assert claim(db, first, "w2") is None  # held
    assert get_job(db, job_id).status == "running"
    recs = records(db, lease)
    assert complete_chunk(db, lease, recs, {"model": "tiny"})
    assert not complete_chunk(db, lease, recs, {"model": "tiny"})  # a replay stores nothing twice
    assert claim(db, first, "w2") is None  # done
    job = get_job(db, job_id)
    assert (job.completed, job.failed, job.status) == (2, 0, "running")
    assert result_rows(db, job_id) == 2

    lease2 = claim(db, second)
    assert lease2 is not None
    assert complete_chunk(db, lease2, records(db, lease2), None)
    job = get_job(db, job_id)
    assert (job.completed, job.status) == (3, "completed") and job.completed_at is not None
    out = list(iter_results(db, job_id))
    assert [r["line"] for r in out] == [1, 2, 3]
    assert out[0] == {**chat_record(1, "c1", 2.5, 7, False), "cached": False}


def test_concurrent_claims_have_one_winner(db: Engine) -> None:
    job_id = chat_job(db, 2)
    (chunk,) = chunk_ids(db, job_id)
    wins: list[Lease] = []

    def go(i: int) -> None:
        lease = claim(db, chunk, f"w{i}")
        if lease:
            wins.append(lease)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_an_expired_lease_passes_to_another_worker_and_the_first_cannot_complete(db: Engine) -> None:
    job_id = chat_job(db, 2)
    (chunk,) = chunk_ids(db, job_id)
    slow = claim(db, chunk, "slow")
    assert slow is not None
    expire(db, chunk)
    fast = claim(db, chunk, "fast")
    assert fast is not None and fast.attempts == 2
    assert complete_chunk(db, fast, records(db, fast, 9.0), None)
    assert not complete_chunk(db, slow, records(db, slow, -9.0), None)
    assert not renew_lease(db, slow, 60)
    job = get_job(db, job_id)
    assert (job.completed, job.status) == (2, "completed")
    assert [r["score"] for r in iter_results(db, job_id)] == [10.0, 11.0]


def test_the_same_worker_cannot_complete_a_lease_it_lost_and_took_again(db: Engine) -> None:
    job_id = chat_job(db, 2)
    (chunk,) = chunk_ids(db, job_id)
    old = claim(db, chunk, "w")
    expire(db, chunk)
    new = claim(db, chunk, "w")
    assert old and new and old.owner != new.owner
    assert not complete_chunk(db, old, records(db, old), None)
    assert complete_chunk(db, new, records(db, new), None)


def test_records_must_match_the_chunk(db: Engine) -> None:
    job_id = chat_job(db, 2)
    lease = claim(db, chunk_ids(db, job_id)[0])
    assert lease is not None
    with pytest.raises(ValueError):
        complete_chunk(db, lease, records(db, lease)[:1], None)


def test_item_errors_count_as_failed_lines(db: Engine) -> None:
    job_id = chat_job(db, 2)
    lease = claim(db, chunk_ids(db, job_id)[0])
    assert lease is not None
    recs = [chat_record(1, "c1", 0.5, 3, True), error_record(2, "c2", "too_long", "too long")]
    assert complete_chunk(db, lease, recs, None)
    job = get_job(db, job_id)
    assert (job.completed, job.failed, job.status) == (1, 1, "completed")
    assert list(iter_results(db, job_id)) == [{**recs[0], "cached": False}, recs[1]]
    assert list(iter_results(db, job_id, errors_only=True)) == recs[1:]


def test_release_retries_then_fails_with_the_error_on_every_item(db: Engine) -> None:
    job_id = chat_job(db, 3)
    bad, good = chunk_ids(db, job_id)
    for attempt in (1, 2):
        lease = claim(db, bad)
        assert lease is not None and lease.attempts == attempt
        assert release_chunk(db, lease, "RuntimeError: boom", max_attempts=3) == "queued"
    lease = claim(db, bad)
    assert lease is not None and lease.attempts == 3
    assert release_chunk(db, lease, "RuntimeError: boom", max_attempts=3) == "failed"
    assert claim(db, bad) is None
    lease = claim(db, good)
    assert lease is not None
    assert complete_chunk(db, lease, records(db, lease), None)
    job = get_job(db, job_id)
    assert (job.completed, job.failed, job.status) == (1, 2, "completed")
    out = list(iter_results(db, job_id))
    assert [r.get("error", {}).get("code") for r in out] == [SCORING_FAILED, SCORING_FAILED, None]
    # The tenant reads a fixed message naming the chunk; the exception text stays with the operator.
    assert out[0]["error"]["message"] == out[1]["error"]["message"] == failure_messages.chunk_failed(3, bad)
    assert "boom" not in out[0]["error"]["message"]
    with reading(db) as conn:
        assert conn.execute(select(chunks.c.error).where(chunks.c.id == bad)).scalar_one() == "RuntimeError: boom"


def test_a_job_whose_every_line_failed_is_failed(db: Engine) -> None:
    job_id = chat_job(db, 1)
    (chunk,) = chunk_ids(db, job_id)
    lease = claim(db, chunk, max_attempts=1)
    assert lease is not None
    assert release_chunk(db, lease, "boom", max_attempts=1) == "failed"
    job = get_job(db, job_id)
    assert (job.status, job.failed) == ("failed", 1) and job.failed_at is not None


def test_reaper_requeues_expired_leases_and_fails_used_up_ones(db: Engine) -> None:
    job_id = chat_job(db, 4)
    a, b = chunk_ids(db, job_id)
    la, lb = claim(db, a), claim(db, b, max_attempts=3)
    assert la and lb
    with writing(db) as conn:
        conn.execute(update(chunks).where(chunks.c.id == b).values(attempts=3))
    reaped = reap_expired_leases(db, max_attempts=3)
    assert reaped.requeued == [] and reaped.failed == 0  # nothing expired yet
    expire(db, a)
    expire(db, b)
    reaped = reap_expired_leases(db, max_attempts=3)
    assert [c.id for c in reaped.requeued] == [a] and reaped.failed == 1
    assert chunk_counts(db, job_id) == {"queued": 1, "failed": 1}
    assert not complete_chunk(db, la, records(db, la), None)  # the dead worker's lease is gone
    again = claim(db, a)
    assert again is not None and again.attempts == 2
    assert complete_chunk(db, again, records(db, again), None)
    job = get_job(db, job_id)
    assert (job.completed, job.failed, job.status) == (2, 2, "completed")
    # A worker's name (its host) is for the operator: in the chunk's error, not in the tenant's result.
    assert list(iter_results(db, job_id))[2]["error"]["message"] == failure_messages.chunk_failed(3, b)
    with reading(db) as conn:
        error = conn.execute(select(chunks.c.error).where(chunks.c.id == b)).scalar_one()
    assert "lease expired" in error and lb.owner in error


def test_cancel_keeps_scored_results_and_stops_the_rest(db: Engine) -> None:
    job_id = chat_job(db, 6)
    first, running, later = chunk_ids(db, job_id)
    done = claim(db, first)
    assert done and complete_chunk(db, done, records(db, done), None)
    in_hand = claim(db, running)
    assert in_hand is not None
    job = cancel_job(db, job_id)
    assert job.status == "cancelling"
    assert claim(db, later) is None
    assert chunk_counts(db, job_id) == {"done": 1, "leased": 1, "cancelled": 1}
    # The chunk in hand finishes and is kept; then the job is cancelled.
    assert complete_chunk(db, in_hand, records(db, in_hand), None)
    job = get_job(db, job_id)
    assert (job.status, job.completed) == ("cancelled", 4) and job.cancelled_at is not None
    out = list(iter_results(db, job_id))
    assert [r.get("error", {}).get("code") for r in out] == [None] * 4 + ["cancelled"] * 2


def test_cancelled_job_with_a_dead_worker_ends_by_the_reaper(db: Engine) -> None:
    job_id = chat_job(db, 2)
    (chunk,) = chunk_ids(db, job_id)
    assert claim(db, chunk) is not None
    assert cancel_job(db, job_id).status == "cancelling"
    expire(db, chunk)
    reaped = reap_expired_leases(db, max_attempts=3)
    assert reaped.cancelled == 1 and reaped.requeued == []
    assert get_job(db, job_id).status == "cancelled"


def test_finish_jobs_catches_jobs_left_behind(db: Engine) -> None:
    job_id = chat_job(db, 2)
    (chunk,) = chunk_ids(db, job_id)
    lease = claim(db, chunk)
    assert lease is not None
    # As if the last chunk's transaction had not moved the job (e.g. written by an older worker).
    assert complete_chunk(db, lease, records(db, lease), None)
    from db.models import jobs

    with writing(db) as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(status="running", completed_at=None))
    assert finish_jobs(db) == 1
    assert get_job(db, job_id).status == "completed"
    assert finish_jobs(db) == 0


def test_queued_chunks_lists_only_active_jobs(db: Engine) -> None:
    live = chat_job(db, 4)
    stopped = chat_job(db, 2)
    cancel_job(db, stopped)
    refs = queued_chunks(db)
    assert {r.job_id for r in refs} == {live} and [r.n_items for r in refs] == [2, 2]
    assert queued_chunks(db, enqueued_before=utcnow() - timedelta(hours=1)) == []


def test_accuracy_per_subset_and_overall(db: Engine) -> None:
    job_id = pair_job(db, ["a", "a", "b"])
    for chunk in chunk_ids(db, job_id):
        lease = claim(db, chunk)
        assert lease is not None
        recs = records(db, lease)
        if lease.first_line == 1:  # line 2 gets a tie: a tie is wrong
            recs[1] = pair_record(2, "p2", "a", 1.0, 1.0, False)
        assert complete_chunk(db, lease, recs, None)
    acc = job_accuracy(db, job_id, "tiny")
    subsets = {"a": {"accuracy": 0.5, "n": 2}, "b": {"accuracy": 1.0, "n": 1}}
    assert acc == {"overall": 2 / 3, "n": 3, "subsets": subsets}


def test_work_left_counts_what_a_worker_of_the_model_may_still_be_handed(db: Engine) -> None:
    # What `rmscore worker --burst` waits on: queued and leased chunks of its model, for its weights.
    from db.chunks import work_left

    refs = {"ref-a"}
    assert work_left(db, "tiny", refs) == 0
    job = chat_job(db, 6)  # three chunks
    first, second, _ = chunk_ids(db, job)
    assert work_left(db, "tiny", refs) == 3 and work_left(db, "other", refs) == 0
    lease = claim_chunk(db, first, new_owner("w"), **LEASE)
    assert lease is not None and work_left(db, "tiny", refs) == 3  # leased: it may come back
    assert complete_chunk(db, lease, records(db, lease), None)
    assert work_left(db, "tiny", refs) == 2
    with writing(db) as conn:  # recorded for other weights of the same name: never ours
        conn.execute(update(chunks).where(chunks.c.id == second).values(model_ref="ref-b"))
    assert work_left(db, "tiny", refs) == 1 and work_left(db, "tiny", {"ref-b"}) == 2
    cancel_job(db, job)
    assert work_left(db, "tiny", refs) == 0
