"""Results read back exactly as `rmscore score` writes them, in input order, page by page."""

from __future__ import annotations

import json

from sqlalchemy import Engine, select

from db.chunks import claim_chunk, complete_chunk, load_items, new_owner
from db.jobs import create_job
from db.models import chunks
from db.results import iter_results
from db.session import reading
from rmscore.formats import error_record, pair_record, parse_line


def test_record_shapes_match_rmscore_score(db: Engine) -> None:
    lines = [
        json.dumps({"custom_id": "a", "prompt": "q", "chosen": "c", "rejected": "r", "subset": "s1"}),
        json.dumps({"custom_id": "b", "prompt": "q", "chosen": "c", "rejected": 5, "subset": "s2"}),  # bad, subset
        "{oops",  # bad, no subset
        json.dumps({"custom_id": "d", "prompt": "q", "chosen": "c", "rejected": "r"}),  # engine rejects it
        json.dumps({"custom_id": "e", "prompt": "q", "chosen": "c", "rejected": "r", "subset": "s1"}),
    ]
    job = create_job(db, [parse_line(x, n, "pairwise") for n, x in enumerate(lines, 1)], model="tiny").job
    with reading(db) as conn:
        (chunk_id,) = conn.execute(select(chunks.c.id).where(chunks.c.job_id == job.id)).scalars()
    lease = claim_chunk(db, chunk_id, new_owner("w"), lease_seconds=60, max_attempts=3)
    assert lease is not None and [i.line for i in load_items(db, lease)] == [1, 4, 5]
    rejected = error_record(4, "d", "too_long", "chosen: too long")  # no subset named: none carried
    # Line 5's scores came from the score cache (`worker.cache.CachingScorer.mark` sets the flag).
    cached = {**pair_record(5, "e", "s1", -2.0, 3.5, True), "cached": True}
    recs = [pair_record(1, "a", "s1", 0.25, -1.0, False), rejected, cached]
    assert complete_chunk(db, lease, recs, {"model": "tiny"})

    out = list(iter_results(db, job.id))
    bad_with_subset = error_record(2, "b", "invalid_field", out[1]["error"]["message"], "s2")
    # `rmscore score`'s shapes, plus `cached` on every scored line (never on an error).
    assert out == [
        {**recs[0], "cached": False},
        bad_with_subset,
        error_record(3, None, "invalid_json", out[2]["error"]["message"]),
        rejected,
        recs[2],
    ]
    assert [r["line"] for r in iter_results(db, job.id, errors_only=True)] == [2, 3, 4]


def test_pages_resume_after_the_last_line(db: Engine) -> None:
    rows = [json.dumps({"prompt": str(i), "response": "r"}) if i % 7 else "" for i in range(1, 2600)]
    rows = [r for r in rows if r] + ["[1]"]
    job = create_job(db, [parse_line(x, n * 2, "chat") for n, x in enumerate(rows, 1)], model="tiny").job
    # Unscored lines of a running job are left out: only the bad line has an outcome yet.
    assert [r["line"] for r in iter_results(db, job.id)] == [len(rows) * 2]
    from db.jobs import cancel_job

    cancel_job(db, job.id)
    everything = list(iter_results(db, job.id))
    assert [r["line"] for r in everything] == [n * 2 for n in range(1, len(rows) + 1)]
    page1 = list(iter_results(db, job.id, limit=1500))
    page2 = list(iter_results(db, job.id, after_line=page1[-1]["line"], limit=1500))
    assert page1 + page2 == everything
