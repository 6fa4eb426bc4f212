"""Storing jobs: items, bad lines, chunk cutting, idempotency, limits, listing, cancel (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update

from db.chunks import chunk_counts
from db.jobs import cancel_job, create_job, get_job, job_summary, list_jobs, resolve_model
from db.models import chunks, items, jobs, results
from db.results import iter_results
from db.session import reading, writing
from rmscore.errors import BadRequest, Conflict, IdempotencyMismatch, NotFound, TooLarge
from rmscore.formats import parse_line, parse_object
from rmscore.inputs import iter_parsed
from rmscore.settings import Settings


def chat(i: int, text: str = "hello") -> dict[str, Any]:
    return {
        "custom_id": f"c{i}",
        "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": text}],
    }


def pair(i: int, subset: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"custom_id": f"p{i}", "prompt": f"q{i}", "chosen": "good", "rejected": "bad"}
    if subset:
        row["subset"] = subset
    return row


def parsed(rows: list[Any], kind: str | None = None) -> list[Any]:
    return [parse_line(r if isinstance(r, str) else json.dumps(r), n, kind) for n, r in enumerate(rows, 1)]


def count(db: Engine, table: Any, **where: Any) -> int:
    q = select(func.count()).select_from(table)
    for k, v in where.items():
        q = q.where(table.c[k] == v)
    with reading(db) as conn:
        return int(conn.execute(q).scalar_one())


def test_items_and_chunks_are_stored(db: Engine) -> None:
    created = create_job(db, parsed([chat(i) for i in range(1, 11)]), model="tiny", chunk_size=4)
    job = created.job
    assert created.created
    assert (job.status, job.kind, job.model) == ("queued", "chat", "tiny")
    assert (job.total, job.completed, job.failed) == (10, 0, 0)
    with reading(db) as conn:
        rows = conn.execute(
            select(chunks.c.first_line, chunks.c.last_line, chunks.c.n_items, chunks.c.status)
            .where(chunks.c.job_id == job.id)
            .order_by(chunks.c.id)
        ).all()
        stored = conn.execute(select(items).where(items.c.job_id == job.id).order_by(items.c.line)).all()
    assert [tuple(r) for r in rows] == [(1, 4, 4, "queued"), (5, 8, 4, "queued"), (9, 10, 2, "queued")]
    assert [r.line for r in stored] == list(range(1, 11))
    assert stored[0].custom_id == "c1"
    assert stored[0].payload == {"messages": chat(1)["messages"]}
    assert len(stored[0].content_hash) == 64
    assert count(db, results, job_id=job.id) == 0


def test_bad_lines_are_stored_as_failed_items(db: Engine) -> None:
    rows = [
        pair(1, "s1"),
        "{not json",
        pair(3),
        {"prompt": "x", "chosen": "a", "rejected": 7, "subset": "s2"},
        chat(5),
        pair(6),
    ]
    job = create_job(db, parsed(rows, "pairwise"), model="tiny", chunk_size=10).job
    assert (job.kind, job.total, job.failed, job.completed, job.status) == ("pairwise", 6, 3, 0, "queued")
    with reading(db) as conn:
        errs = conn.execute(
            select(results.c.line, results.c.error_code, results.c.subset)
            .where(results.c.job_id == job.id)
            .order_by(results.c.line)
        ).all()
        (chunk,) = conn.execute(select(chunks).where(chunks.c.job_id == job.id)).all()
    assert [(r.line, r.error_code) for r in errs] == [(2, "invalid_json"), (4, "invalid_field"), (5, "kind_mismatch")]
    assert errs[1].subset == "s2"
    # The chunk spans the good lines only; the bad ones between are not scored again.
    assert (chunk.first_line, chunk.last_line, chunk.n_items) == (1, 6, 3)


def test_a_job_of_only_bad_lines_fails_at_once(db: Engine) -> None:
    job = create_job(db, parsed(["{", "[]"]), model="tiny").job
    assert (job.status, job.total, job.failed) == ("failed", 2, 2)
    assert job.failed_at is not None and job.error
    assert chunk_counts(db, job.id) == {}
    assert [r["error"]["code"] for r in iter_results(db, job.id)] == ["invalid_json", "not_an_object"]


def test_chunks_are_cut_by_estimated_tokens(db: Engine) -> None:
    long = "x" * 4000  # ~1000 tokens each
    job = create_job(
        db, parsed([chat(i, long) for i in range(1, 7)]), model="tiny", chunk_size=100, chunk_max_tokens=2500
    ).job
    with reading(db) as conn:
        sizes = conn.execute(select(chunks.c.n_items).where(chunks.c.job_id == job.id).order_by(chunks.c.id)).scalars()
        assert list(sizes) == [2, 2, 2]


def test_one_item_larger_than_the_token_cap_is_a_chunk_of_its_own(db: Engine) -> None:
    job = create_job(db, parsed([chat(1), chat(2, "y" * 40_000), chat(3)]), model="tiny", chunk_max_tokens=100).job
    assert chunk_counts(db, job.id) == {"queued": 3}


def test_empty_input_is_rejected_and_leaves_nothing(db: Engine) -> None:
    with pytest.raises(BadRequest) as e:
        create_job(db, [], model="tiny")
    assert e.value.code == "empty_input"
    assert count(db, jobs) == count(db, items) == 0


def test_too_many_lines_are_rejected_and_leave_nothing(db: Engine) -> None:
    with pytest.raises(TooLarge) as e:
        create_job(db, parsed([chat(i) for i in range(2500)]), model="tiny", max_items=2400)
    assert e.value.code == "too_many_items"
    # Items were written in batches before the limit was hit; they are removed again.
    assert count(db, jobs) == count(db, items) == count(db, results) == count(db, chunks) == 0


def test_an_error_mid_stream_leaves_nothing(db: Engine) -> None:
    def lines():  # type: ignore[no-untyped-def]
        for i in range(1, 1500):
            yield parse_object(chat(i), i)
        raise OSError("upload interrupted")

    with pytest.raises(OSError):
        create_job(db, lines(), model="tiny")
    assert count(db, jobs) == count(db, items) == 0


def test_idempotency_key_returns_the_same_job(db: Engine) -> None:
    first = create_job(db, parsed([chat(1)]), model="tiny", idempotency_key="k1", tenant="a")
    again = create_job(db, parsed([chat(1), chat(2)]), model="tiny", idempotency_key="k1", tenant="a")
    other_tenant = create_job(db, parsed([chat(1)]), model="tiny", idempotency_key="k1", tenant="b")
    assert first.created and not again.created and other_tenant.created
    assert again.job.id == first.job.id and again.job.total == 1
    assert other_tenant.job.id != first.job.id
    assert count(db, jobs) == 2


def test_an_idempotency_key_with_another_fingerprint_is_refused(db: Engine) -> None:
    first = create_job(db, parsed([chat(1)]), model="tiny", idempotency_key="k2", tenant="a", fingerprint="f1")
    same = create_job(db, parsed([chat(1)]), model="tiny", idempotency_key="k2", tenant="a", fingerprint="f1")
    assert same.job.id == first.job.id and not same.created
    with pytest.raises(IdempotencyMismatch):
        create_job(db, parsed([chat(1)]), model="tiny", idempotency_key="k2", tenant="a", fingerprint="f2")
    # A deferred fingerprint (an upload's) is read once the input is: after the last line.
    read: list[int] = []

    def lines() -> Any:
        for p in parsed([chat(1), chat(2)]):
            read.append(p.line)
            yield p

    def digest() -> str:
        assert read == [1, 2]
        return "f3"

    late = create_job(db, lines(), model="tiny", idempotency_key="k3", tenant="a", fingerprint=digest)
    read.clear()
    with pytest.raises(IdempotencyMismatch):
        create_job(db, lines(), model="tiny", idempotency_key="k3", tenant="a", fingerprint=lambda: "f4")
    read.clear()
    assert (
        create_job(db, lines(), model="tiny", idempotency_key="k3", tenant="a", fingerprint=digest).job.id
        == late.job.id
    )
    assert count(db, jobs) == 2


def test_bad_options_and_kind_are_refused(db: Engine) -> None:
    for options in ({"overflow": "drop"}, {"max_batch_tokens": 3}, {"temperature": 1}):
        with pytest.raises(BadRequest):
            create_job(db, parsed([chat(1)]), model="tiny", options=options)
    with pytest.raises(BadRequest):
        create_job(db, parsed([chat(1)]), model="tiny", kind="triple")
    job = create_job(
        db, parsed([chat(1)]), model="tiny", options={"overflow": "error", "max_batch_tokens": 64}, metadata={"run": 7}
    ).job
    assert job.options == {"overflow": "error", "max_batch_tokens": 64} and job.metadata == {"run": 7}


def test_only_configured_models_may_be_named() -> None:
    s = Settings(model="/models/tiny", models=["org/Other-RM"], _env_file=None)
    assert resolve_model(None, s) == "tiny"
    assert resolve_model("other-rm", s) == "other-rm"
    assert resolve_model("org/Other-RM", s) == "other-rm"
    with pytest.raises(BadRequest) as e:
        resolve_model("../../etc", s)
    assert e.value.code == "unknown_model" and "tiny" in e.value.message


def test_get_job_hides_other_tenants(db: Engine) -> None:
    job = create_job(db, parsed([chat(1)]), model="tiny", tenant="alice").job
    assert get_job(db, job.id, tenant="alice").id == job.id
    with pytest.raises(NotFound):
        get_job(db, job.id, tenant="bob")
    with pytest.raises(NotFound):
        get_job(db, "nope")


def test_reads_given_a_connection_stay_in_its_transaction(db: Engine) -> None:
    # A caller inside a write transaction reads through it: it sees its own uncommitted change (on
    # SQLite a second connection would instead wait on the first's lock).
    job = create_job(db, parsed([chat(1)]), model="tiny").job
    with writing(db) as conn:
        conn.execute(update(jobs).where(jobs.c.id == job.id).values(status="running"))
        assert get_job(conn, job.id).status == "running"
        with reading(conn) as same:
            assert same is conn
    assert get_job(db, job.id).status == "running"


def test_list_jobs_pages_newest_first_each_job_once(db: Engine) -> None:
    ids = [create_job(db, parsed([chat(1)]), model="tiny", tenant="t").job.id for _ in range(7)]
    create_job(db, parsed([chat(1)]), model="tiny", tenant="other")
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = list_jobs(db, tenant="t", limit=3, cursor=cursor)
        seen += [j.id for j in page]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    created = [get_job(db, i).created_at for i in seen]
    assert created == sorted(created, reverse=True)
    assert list_jobs(db, tenant="t", status="completed")[0] == []
    with pytest.raises(BadRequest):
        list_jobs(db, cursor="%%%")


def test_cancel_a_queued_job(db: Engine) -> None:
    job = create_job(db, parsed([chat(i) for i in range(5)]), model="tiny", chunk_size=2).job
    after = cancel_job(db, job.id)
    assert after.status == "cancelled" and after.cancelled_at is not None
    assert chunk_counts(db, job.id) == {"cancelled": 3}
    assert cancel_job(db, job.id).status == "cancelled"  # again: a no-op
    records = list(iter_results(db, job.id))
    assert [r["error"]["code"] for r in records] == ["cancelled"] * 5
    with pytest.raises(NotFound):
        cancel_job(db, job.id, tenant="someone-else")


def test_cancel_a_finished_job_is_a_conflict(db: Engine) -> None:
    job = create_job(db, parsed(["{"]), model="tiny").job
    with pytest.raises(Conflict):
        cancel_job(db, job.id)


def test_summary_is_json_ready(db: Engine) -> None:
    job = create_job(db, parsed([pair(1, "a")]), model="tiny").job
    s = job_summary(db, job.id)
    json.dumps(s)
    assert s["request_counts"] == {"total": 1, "completed": 0, "failed": 0}
    assert s["created_at"].endswith("Z") and s["accuracy"] is None


def test_whole_json_documents_are_accepted(db: Engine, shared_data: Any) -> None:
    job = create_job(db, iter_parsed(shared_data / "evalbiasbench.json"), model="tiny", chunk_size=16).job
    assert (job.kind, job.total, job.failed) == ("pairwise", 80, 0)
    with reading(db) as conn:
        subsets = conn.execute(select(func.count(func.distinct(items.c.subset))).where(items.c.job_id == job.id))
        assert subsets.scalar_one() == 6
