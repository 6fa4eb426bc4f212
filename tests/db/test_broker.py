"""Producer and reconciler against the real Redis (no worker): what is sent, and what is re-sent."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, update

from db.chunks import chunk_counts, claim_chunk, mark_enqueued, new_owner, queued_chunks
from db.jobs import create_job
from db.models import chunks
from db.producer import enqueue_job, send_chunks
from db.session import utcnow, writing
from rmscore import keys
from rmscore.formats import parse_object
from worker.reconcile import reconcile_once


def job(db: Engine, n: int = 6, chunk_size: int = 2, model: str = "tiny-model") -> str:
    rows = [{"prompt": f"q{i}", "response": "a"} for i in range(n)]
    return create_job(
        db, [parse_object(r, i + 1) for i, r in enumerate(rows)], model=model, chunk_size=chunk_size
    ).job.id


def messages(r: Any, queue: str) -> list[dict[str, Any]]:
    return [json.loads(m) for m in r.lrange(queue, 0, -1)]


def age_all(db: Engine, seconds: float = 3600) -> None:
    with writing(db) as conn:
        conn.execute(update(chunks).values(enqueued_at=utcnow() - timedelta(seconds=seconds)))


def test_a_message_names_its_chunk_in_json(db: Engine, broker: Any) -> None:
    settings, r, app = broker
    job_id = job(db)
    assert enqueue_job(db, job_id, app=app, r=r) == 3
    msgs = messages(r, keys.score_queue("tiny-model"))
    assert len(msgs) == 3
    for m in msgs:
        assert m["content-type"] == "application/json"
        assert m["headers"]["task"] == keys.TASK_SCORE_CHUNK
        body = json.loads(base64.b64decode(m["body"]))
        args, kwargs, _ = body
        assert args == [] and set(kwargs) == {"job", "chunk", "items"}
        assert kwargs["job"] == job_id and kwargs["items"] == 2
        assert r.get(keys.chunk_enqueued(kwargs["chunk"])) == job_id.encode()
    assert sorted(json.loads(base64.b64decode(m["body"]))[1]["chunk"] for m in msgs) == sorted(
        c.id for c in queued_chunks(db, job_id=job_id)
    )


def test_messages_still_land_after_redis_lost_everything(db: Engine, broker: Any) -> None:
    settings, r, app = broker
    job_id = job(db)
    enqueue_job(db, job_id, app=app, r=r)
    r.flushdb()  # bindings, queues and keys gone; the app keeps its connection and its caches
    refs = queued_chunks(db, job_id=job_id)
    assert send_chunks(app, r, refs) == 3
    assert len(messages(r, keys.score_queue("tiny-model"))) == 3


def test_reconcile_resends_only_what_the_broker_lost(db: Engine, broker: Any) -> None:
    settings, r, app = broker
    queue = keys.score_queue("tiny-model")
    job_id = job(db)
    enqueue_job(db, job_id, app=app, r=r)
    age_all(db)
    report = reconcile_once(db, r, app, settings)
    assert report.ran and not report  # every queued chunk is known to the broker
    assert r.llen(queue) == 3

    mark_enqueued(db, [c.id for c in queued_chunks(db, job_id=job_id)])  # as if sent just now
    r.flushdb()
    fresh = reconcile_once(db, r, app, settings)
    assert fresh.resent_lost == []  # sent moments ago: within the grace period
    age_all(db)
    report = reconcile_once(db, r, app, settings)
    assert sorted(report.resent_lost) == sorted(c.id for c in queued_chunks(db, job_id=job_id))
    assert r.llen(queue) == 3
    assert all(r.exists(keys.chunk_enqueued(c)) for c in report.resent_lost)
    age_all(db)
    assert reconcile_once(db, r, app, settings).resent_lost == []  # keys are back


def test_reconcile_requeues_expired_leases_and_resends_them(db: Engine, broker: Any) -> None:
    settings, r, app = broker
    job_id = job(db, n=2)
    (ref,) = queued_chunks(db, job_id=job_id)
    assert claim_chunk(db, ref.id, new_owner("dead"), lease_seconds=60, max_attempts=3)
    with writing(db) as conn:
        conn.execute(update(chunks).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    report = reconcile_once(db, r, app, settings)
    assert report.requeued_expired == [ref.id]
    assert chunk_counts(db, job_id) == {"queued": 1}
    assert r.llen(keys.score_queue("tiny-model")) == 1 and r.exists(keys.chunk_enqueued(ref.id))


def test_one_reconciler_at_a_time(db: Engine, broker: Any) -> None:
    settings, r, app = broker
    r.set(keys.RECONCILE_LOCK, "someone-else", ex=30)
    assert not reconcile_once(db, r, app, settings).ran
    assert r.get(keys.RECONCILE_LOCK) == b"someone-else"  # not ours to release
    assert reconcile_once(db, r, app, settings, use_lock=False).ran
    r.delete(keys.RECONCILE_LOCK)
    assert reconcile_once(db, r, app, settings).ran
    assert not r.exists(keys.RECONCILE_LOCK)


def test_a_job_is_kept_when_the_broker_is_down(db: Engine, tmp_path: Any) -> None:
    from db.producer import submit
    from rmscore.settings import Settings

    down = "redis://127.0.0.1:9/0"  # nothing listens on port 9
    settings = Settings(broker_url=down, database_url=str(db.url), model="tiny-model", _env_file=None)
    path = tmp_path / "in.jsonl"
    path.write_text('{"prompt": "q", "response": "a"}\n' * 3)
    created = submit(path, settings=settings, db=db, chunk_size=2)
    # Stored with its chunks queued: a worker's reconciler sends them once the broker is back.
    assert created.created and created.job.status == "queued"
    assert chunk_counts(db, created.job.id) == {"queued": 2}
