"""The score cache and model comparison in SQL, on SQLite and PostgreSQL (no workers): cache rows
round-trip, the first writer wins, a scope (tenant) only sees its own rows, the weights digest is
part of the identity; pruning holds the age and row bounds, `clear` narrows by model, age and scope,
and `stats` counts per identity; a two-model job stores chunks and counts per model, and
`compare_job` finds exactly the pairs whose preferred side differs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from testkit import database_url

from db.cache import (
    SHARED_SCOPE,
    CachedScore,
    cache_scope,
    clear,
    conversation_hash,
    identity_hash,
    lookup,
    prune,
    rows_by_model,
    stats,
    store,
)
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


IDENT = {"model": "m", "revision": None, "weights": "sha256:aa", "dtype": "float32", "max_length": 4096}


def test_cache_round_trip_first_writer_wins(db: Engine) -> None:
    ident = identity_hash(IDENT)
    other = identity_hash({**IDENT, "dtype": "bfloat16"})
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    h = conversation_hash(conv)
    store(db, "alice", ident, "m", {h: CachedScore(1.25, 7, False)})
    store(db, "alice", ident, "m", {h: CachedScore(9.0, 1, True)})  # a second worker, same key: ignored
    assert lookup(db, "alice", ident, [h, "0" * 64]) == {h: CachedScore(1.25, 7, False)}
    assert lookup(db, "alice", other, [h]) == {}  # another dtype is another identity


def test_weights_digest_is_part_of_the_identity() -> None:
    # Same path, revision, dtype and max_length: only the weights differ, and so does the identity.
    assert identity_hash(IDENT) != identity_hash({**IDENT, "weights": "sha256:bb"})
    assert identity_hash(IDENT) == identity_hash(dict(IDENT))


def test_a_tenant_never_sees_another_tenants_rows(db: Engine) -> None:
    ident = identity_hash(IDENT)
    h = conversation_hash([{"role": "user", "content": "secret"}, {"role": "assistant", "content": "ok"}])
    store(db, cache_scope("alice", "tenant"), ident, "m", {h: CachedScore(0.5, 3, False)})
    assert lookup(db, cache_scope("alice", "tenant"), ident, [h]) == {h: CachedScore(0.5, 3, False)}
    assert lookup(db, cache_scope("bob", "tenant"), ident, [h]) == {}
    assert lookup(db, SHARED_SCOPE, ident, [h]) == {}  # a shared cache does not see tenant rows either
    # Shared: both tenants' jobs read and write the one shared scope.
    assert cache_scope("alice", "shared") == cache_scope("bob", "shared") == SHARED_SCOPE
    store(db, cache_scope("alice", "shared"), ident, "m", {h: CachedScore(0.5, 3, False)})
    assert lookup(db, cache_scope("bob", "shared"), ident, [h]) == {h: CachedScore(0.5, 3, False)}


def _fill(db: Engine, n: int, *, model: str = "m", scope: str = "alice", age_s: float = 0.0, tag: str = "") -> None:
    """n rows, stored as if scored `age_s` seconds ago."""
    from db.models import score_cache

    ident = identity_hash({**IDENT, "model": model})
    hashes = [conversation_hash([{"role": "user", "content": f"{tag}{model}{i}"}]) for i in range(n)]
    # Only these rows get the age (another scope may hold the same conversations).
    store(db, scope, ident, model, {h: CachedScore(float(i), 1, False) for i, h in enumerate(hashes)})
    with writing(db) as conn:
        conn.execute(
            score_cache.update()
            .where(score_cache.c.scope == scope, score_cache.c.conversation_hash.in_(hashes))
            .values(created_at=utcnow() - timedelta(seconds=age_s))
        )


def _count(db: Engine) -> int:
    return sum(rows_by_model(db).values())


def test_prune_holds_the_age_and_row_bounds(db: Engine) -> None:
    _fill(db, 4, age_s=3 * 86400, tag="old")
    _fill(db, 5, age_s=100, tag="mid")
    _fill(db, 3, age_s=0, tag="new")
    assert _count(db) == 12
    assert prune(db, max_age_s=0, max_rows=0).deleted == 0  # 0 = no bound
    report = prune(db, max_age_s=86400, max_rows=0)
    assert (report.expired, report.over_rows, _count(db)) == (4, 0, 8)
    report = prune(db, max_age_s=86400, max_rows=3)
    assert (report.expired, report.over_rows, _count(db)) == (0, 5, 3)
    # The newest rows are the ones kept.
    ident = identity_hash(IDENT)
    new = [conversation_hash([{"role": "user", "content": f"newm{i}"}]) for i in range(3)]
    assert set(lookup(db, "alice", ident, new)) == set(new)
    assert prune(db, max_age_s=86400, max_rows=3).deleted == 0


def test_prune_keeps_exactly_max_rows_when_rows_share_a_timestamp(db: Engine) -> None:
    _fill(db, 10, tag="same")  # one store: one timestamp for all ten
    assert prune(db, max_age_s=0, max_rows=4).over_rows == 6
    assert _count(db) == 4


def test_clear_narrows_by_model_age_and_scope_and_stats_count_per_identity(db: Engine) -> None:
    _fill(db, 3, model="a", age_s=7200)
    _fill(db, 2, model="a", scope="bob")
    _fill(db, 4, model="b")
    st = stats(db)
    assert st.rows == 9
    assert [(i.model, i.rows, i.scopes) for i in st.identities] == [("a", 5, 2), ("b", 4, 1)]
    assert st.oldest is not None and st.newest is not None and st.oldest < st.newest
    assert st.size_bytes is not None and st.size_bytes > 0
    assert st.as_dict()["identities"][0]["identity_hash"] == identity_hash({**IDENT, "model": "a"})
    assert rows_by_model(db) == {"a": 5, "b": 4}
    assert clear(db, model="a", older_than=timedelta(hours=1)) == 3
    assert clear(db, scope="bob") == 2
    assert rows_by_model(db) == {"b": 4}
    assert clear(db) == 4 and stats(db).rows == 0


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


class _Engine:
    """Engine-shaped stand-in (pure logic): counts the conversations it is asked to score."""

    name, overflow = "m", "truncate"

    def __init__(self, weights: str | None) -> None:
        self.identity = {**IDENT, "weights": weights}
        self.scored = 0

    def score(self, conversations: list, *, overflow: str | None = None) -> list:
        from worker.engine import Scored

        self.scored += len(conversations)
        return [Scored(1.5, 4, False) for _ in conversations]


def test_weights_nobody_can_name_never_use_the_cache(db: Engine) -> None:
    from worker.cache import CachingScorer

    convs = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}] for i in range(3)]
    unnamed = _Engine(None)  # built in memory, or a hub model without a commit
    for _ in range(2):
        CachingScorer(unnamed, db, "alice").score(convs)
    assert unnamed.scored == 6 and rows_by_model(db) == {}
    named = _Engine("sha256:aa")
    for _ in range(2):
        scorer = CachingScorer(named, db, "alice")
        scorer.score(convs)
    assert named.scored == 3 and scorer.hits == 3 and rows_by_model(db) == {"m": 3}


def test_cache_clear_reads_durations() -> None:
    import typer

    from rmscore.cli.cache import parse_duration

    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("12h") == timedelta(hours=12) and parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("1.5m") == timedelta(seconds=90) and parse_duration("2w") == timedelta(days=14)
    with pytest.raises(typer.BadParameter):
        parse_duration("soon")
