"""The score cache and model comparison in SQL, on SQLite and PostgreSQL (no workers): cache rows
round-trip and the first writer wins; a two-model job stores chunks and counts per model, and
`compare_job` finds exactly the pairs whose preferred side differs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from testkit import database_url

from db.cache import CachedScore, conversation_hash, identity_hash, lookup, store
from db.chunks import chunk_counts
from db.compare import compare_job
from db.jobs import create_job, job_summary
from db.migrate import upgrade
from db.models import chunks, results
from db.results import result_row, upsert_results
from db.session import make_engine, reading, utcnow, writing
from rmscore.errors import BadRequest
from rmscore.formats import LineError, PairItem


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_schema_url: Callable[[str], str]) -> Iterator[Engine]:
    engine = make_engine(database_url(request.param, tmp_path, pg_schema_url, "rmscore_cache"))
    upgrade(engine)
    yield engine
    engine.dispose()


def test_cache_round_trip_first_writer_wins(db: Engine) -> None:
    ident = identity_hash({"model": "m", "revision": None, "dtype": "float32", "max_length": 4096})
    other = identity_hash({"model": "m", "revision": None, "dtype": "bfloat16", "max_length": 4096})
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    h = conversation_hash(conv)
    store(db, ident, {h: CachedScore(1.25, 7, False)})
    store(db, ident, {h: CachedScore(9.0, 1, True)})  # a second worker, same key: ignored
    assert lookup(db, ident, [h, "0" * 64]) == {h: CachedScore(1.25, 7, False)}
    assert lookup(db, other, [h]) == {}  # another dtype is another identity


def _pair(line: int, subset: str) -> PairItem:
    user = [{"role": "user", "content": f"q{line}"}]
    return PairItem(
        line,
        f"c{line}",
        subset,
        [*user, {"role": "assistant", "content": "good"}],
        [*user, {"role": "assistant", "content": "bad"}],
    )


def test_two_model_job_counts_and_compare(db: Engine) -> None:
    parsed = [_pair(1, "s1"), _pair(2, "s1"), _pair(3, "s2"), LineError(4, "x", None, "invalid_json", "bad")]
    job = create_job(db, parsed, model="a", models=["b", "a"], kind="pairwise", chunk_size=2).job
    assert (job.total, job.failed) == (8, 2)  # 4 lines x 2 models; the bad line fails for both
    with reading(db) as conn:
        by_model = conn.execute(select(chunks.c.model, chunks.c.n_items).where(chunks.c.job_id == job.id)).all()
    assert sorted(by_model) == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert chunk_counts(db, job.id) == {"queued": 4}

    # a: right on 1, 2, 3; b: right on 1, wrong on 2 and 3 -> they disagree on lines 2 and 3.
    scores = {"a": [(2.0, 1.0), (2.0, 1.0), (3.0, 0.0)], "b": [(2.0, 1.0), (0.0, 1.0), (0.5, 1.5)]}
    now = utcnow()
    rows = [
        result_row(job.id, m, {"line": i + 1, "custom_id": f"c{i + 1}", "subset": ["s1", "s1", "s2"][i],
                               "chosen_score": c, "rejected_score": r}, None, now)
        for m, pairs in scores.items()
        for i, (c, r) in enumerate(pairs)
    ]  # fmt: skip
    with writing(db) as conn:
        upsert_results(conn, rows)
    cmp = compare_job(db, job.id)
    assert cmp["models"] == ["a", "b"] and cmp["n"] == 3
    assert cmp["agreement"] == pytest.approx(1 / 3) and cmp["disagreements_total"] == 2
    assert cmp["accuracy"] == {"a": 1.0, "b": pytest.approx(1 / 3)}
    assert [(s["subset"], s["n"], s["agreement"]) for s in cmp["subsets"]] == [("s1", 2, 0.5), ("s2", 1, 0.0)]
    assert [d["line"] for d in cmp["disagreements"]] == [2, 3]
    assert cmp["disagreements"][0]["scores"]["b"] == {"chosen_score": 0.0, "rejected_score": 1.0, "correct": False}
    page = compare_job(db, job.id, limit=1)
    assert [d["line"] for d in page["disagreements"]] == [2] and page["next_cursor"] == 2
    assert [d["line"] for d in compare_job(db, job.id, after_line=2)["disagreements"]] == [3]
    with pytest.raises(BadRequest):
        compare_job(db, job.id, models=["a", "ghost"])

    summary = job_summary(db, job.id)
    assert summary["models"] == ["a", "b"]
    assert summary["by_model"]["b"]["accuracy"]["overall"] == pytest.approx(1 / 3)
    with reading(db) as conn:
        q = select(results.c.cached).where(results.c.model == "b", results.c.line == 1)
        assert conn.execute(q).scalar() is False
