"""Cursor paging is exact: for any page size, the pages of a listing concatenate to the whole listing,
each row once, in order (SQLite and PostgreSQL).

Jobs scored by several models have one score row per (line, model), so a cursor that holds less
than the whole sort key skips rows; jobs created in the same microsecond tie on `created_at`, so
the jobs cursor needs the id too. Hypothesis picks page sizes, filters and the query's path.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, update

import db.scores as score_store
from db.jobs import create_job, list_jobs
from db.models import jobs
from db.results import result_row, upsert_results
from db.scores import ScoreQuery, query_scores
from db.session import writing
from rmscore.errors import BadRequest
from rmscore.formats import pair_record, parse_line

MODELS = ("alpha", "beta", "gamma")
_PROPERTY = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)


def _pairs(n: int, subset: str) -> list[Any]:
    rows = [
        json.dumps({"custom_id": f"p{i}", "prompt": f"q{i}", "chosen": "c", "rejected": "r", "subset": subset})
        for i in range(1, n + 1)
    ]
    return [parse_line(r, i, "pairwise") for i, r in enumerate(rows, 1)]


def _store(db: Engine, tenant: str, n: int, models: tuple[str, ...], subset: str) -> str:
    """A job of `n` pairs scored by each of `models` (one result row per line and model)."""
    job = create_job(db, _pairs(n, subset), model=models[0], models=list(models[1:]), tenant=tenant).job
    now = datetime(2026, 1, 1)
    rows = [
        result_row(job.id, m, pair_record(line, f"p{line}", subset, 0.1 * line, 0.05 * k, False), None, now)
        for line in range(1, n + 1)
        for k, m in enumerate(models)
    ]
    with writing(db) as conn:
        upsert_results(conn, rows)
    return job.id


@pytest.fixture
def scored(db: Engine) -> dict[str, str]:
    ids = {
        "three": _store(db, "t", 5, MODELS, "s1"),
        "two": _store(db, "t", 4, ("beta", "alpha"), "s2"),
        "one": _store(db, "t", 3, ("gamma",), "s1"),
        "other": _store(db, "u", 4, MODELS, "s1"),  # another tenant: never in "t"'s pages
    }
    return ids


def _pages(fetch: Callable[[str | None], tuple[list[Any], str | None]]) -> list[Any]:
    out: list[Any] = []
    cursor = None
    for _ in range(10_000):
        page, cursor = fetch(cursor)
        out += page
        if cursor is None:
            return out
    raise AssertionError("paging did not end")


def _key(row: dict[str, Any]) -> tuple[str, int, str]:
    return (row["job_id"], row["line"], row["model"])


FILTERS = st.sampled_from(
    [
        {},
        {"model": "alpha"},
        {"subset": "s1"},
        {"job": "three"},
        {"job": "two", "model": "beta"},
        {"job": "other"},  # another tenant's job reads as empty
    ]
)


@_PROPERTY
@given(limit=st.integers(1, 12), flt=FILTERS, join=st.booleans())
def test_score_pages_hold_every_row_once(
    db: Engine, scored: dict[str, str], limit: int, flt: dict[str, str], join: bool
) -> None:
    q = ScoreQuery(
        job_id=scored[flt["job"]] if "job" in flt else None, model=flt.get("model"), subset=flt.get("subset")
    )
    # join: a tenant with more jobs than fit an IN list reads through a join on jobs instead.
    with mock.patch.object(score_store, "_IN_LIST_MAX", 0 if join else 5000):
        whole, more = query_scores(db, q, tenant="t", limit=10_000)
        paged = _pages(lambda c: query_scores(db, q, tenant="t", limit=limit, cursor=c))
    assert more is None
    assert [_key(r) for r in paged] == [_key(r) for r in whole]
    # ...and the whole listing is what was stored: every (line, model) of the tenant's matching jobs.
    stored = {
        "three": [(line, m) for line in range(1, 6) for m in MODELS],
        "two": [(line, m) for line in range(1, 5) for m in ("alpha", "beta")],
        "one": [(line, "gamma") for line in range(1, 4)],
    }
    subsets = {"three": "s1", "two": "s2", "one": "s1"}
    want = {
        (scored[name], line, m)
        for name, keys in stored.items()
        for line, m in keys
        if flt.get("job", name) == name
        and flt.get("model", m) == m
        and flt.get("subset", subsets[name]) == subsets[name]
    }
    assert len(paged) == len(want) and set(map(_key, paged)) == want
    # Hex job ids and lowercase model names sort the same in Python and in PostgreSQL's collation.
    assert [_key(r) for r in paged] == sorted(_key(r) for r in paged)


def test_a_two_model_job_pages_one_row_at_a_time(db: Engine, scored: dict[str, str]) -> None:
    """The reported case: limit=1 on a two-model job returned only half of its rows."""
    q = ScoreQuery(job_id=scored["two"])
    paged = _pages(lambda c: query_scores(db, q, tenant="t", limit=1, cursor=c))
    assert [(r["line"], r["model"]) for r in paged] == [(line, m) for line in range(1, 5) for m in ("alpha", "beta")]


def test_jobs_pages_hold_every_job_once_even_when_created_together(db: Engine) -> None:
    ids = [create_job(db, _pairs(1, "s"), model="alpha", tenant="t").job.id for _ in range(9)]
    same = datetime(2026, 5, 1, 12, 0, 0, 123456)
    with writing(db) as conn:  # six of them in the same microsecond: only the id orders them
        conn.execute(update(jobs).where(jobs.c.id.in_(ids[:6])).values(created_at=same))

    @_PROPERTY
    @given(limit=st.integers(1, 10))
    def check(limit: int) -> None:
        paged = _pages(lambda c: list_jobs(db, tenant="t", limit=limit, cursor=c))
        assert sorted(j.id for j in paged) == sorted(ids) and len(paged) == len(ids)
        keys = [(j.created_at, j.id) for j in paged]
        assert keys == sorted(keys, reverse=True)

    check()


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _crafted() -> tuple[list[str], list[str]]:
    """(bad /v1/scores cursors, bad jobs-list cursors): garbage, other shapes, values out of range."""
    from rmscore import cursor as cursors

    garbage = ["%%%", "", "W10", "eyJhIjoxfQ", "bnVsbA", "WyJzY29yZXMiLDEuNSwxLCJhIl0"]  # [], {"a":1}, null, 1.5
    scores = [
        cursors.encode("scores", "x", 2**64, "alpha"),  # past 64 bits
        cursors.encode("scores", "x", 2**31, "alpha"),  # past PostgreSQL's INTEGER
        cursors.encode("scores", "x", -1, "alpha"),
        cursors.encode("scores", "x\x00", 1, "alpha"),  # NUL: PostgreSQL refuses it in text
        cursors.encode("scores", "x", True, "alpha"),
        cursors.encode("scores", "x", 1),  # the old two-column key
        cursors.encode("jobs", "2026-01-01T00:00:00", "x"),  # another endpoint's cursor
        _b64("x|" + "9" * 30),  # the old `job|line` shape, line past 64 bits: OverflowError, a 500, before
        _b64(f"{'0' * 32}|{2**63}"),
    ]
    jobs_list = [
        cursors.encode("jobs", "2026-01-01T00:00:00+05:00", "x"),  # an aware time never compares
        cursors.encode("jobs", "not a time", "x"),
        cursors.encode("jobs", "2026-01-01T00:00:00", 7),
        cursors.encode("jobs", "2026-01-01T00:00:00\x00", "x"),
        _b64("2026-01-01T00:00:00+05:00|x"),  # the old `time|id` shape with an aware time
        _b64("0001-01-01T00:00:00|x\x00"),
    ]
    return garbage + scores, garbage + jobs_list


def test_the_largest_cursor_values_read_an_empty_page(db: Engine, scored: dict[str, str]) -> None:
    """Values at the edge of what a cursor may hold reach the database without an error."""
    from rmscore import cursor as cursors

    for tenant in ("t", None):
        last = cursors.encode("scores", "f" * 32, cursors.INT_MAX, "z" * cursors.STR_MAX)
        assert query_scores(db, ScoreQuery(), tenant=tenant, cursor=last) == ([], None)
        with mock.patch.object(score_store, "_IN_LIST_MAX", 0):
            assert query_scores(db, ScoreQuery(), tenant=tenant, cursor=last) == ([], None)
    oldest = cursors.encode("jobs", datetime(1, 1, 1), "")
    assert list_jobs(db, tenant="t", cursor=oldest) == ([], None)


def test_a_bad_cursor_is_a_bad_request(db: Engine) -> None:
    bad_scores, bad_jobs = _crafted()
    for c in bad_scores:
        with pytest.raises(BadRequest) as e:
            query_scores(db, ScoreQuery(), tenant=None, cursor=c)
        assert e.value.code == "invalid_cursor", c
    for c in bad_jobs:
        with pytest.raises(BadRequest) as e:
            list_jobs(db, tenant=None, cursor=c)
        assert e.value.code == "invalid_cursor", c
