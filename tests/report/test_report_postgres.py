"""The report's database work on PostgreSQL (the fleet's store): binning is done by SQL there, and
PostgreSQL rounds where SQLite truncates, so the histograms are checked against the results."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from report_jobs import SHARED, make_job, pairwise_lines
from sqlalchemy import text

from db.report import build_report, collect
from db.results import iter_results

PG_URL = os.environ.get("RMSCORE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="module")
def pg_db() -> Iterator[Any]:
    """A schema of our own in the test database, dropped afterwards: other tests' tables are untouched."""
    from db.migrate import upgrade
    from db.session import make_engine

    schema = f"report_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as e:  # noqa: BLE001 - say what is missing rather than a driver traceback
        pytest.fail(f"PostgreSQL at {PG_URL} is needed (`.ci/run` starts it): {e}")
    db = make_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        upgrade(db)
        yield db
    finally:
        db.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_histograms_on_postgresql(pg_db: Any, tiny_engine: Any) -> None:
    job_id = make_job(pg_db, tiny_engine, pairwise_lines(SHARED)[:40], kind="pairwise", chunk_size=16)
    margins = [r["chosen_score"] - r["rejected_score"] for r in iter_results(pg_db, job_id) if "correct" in r]
    data = collect(pg_db, job_id)
    total = data.histograms[0]
    want = [0] * (len(total.edges) - 1)
    for m in margins:
        want[max(i for i, e in enumerate(total.edges[:-1]) if e <= m)] += 1
    assert total.counts == [want] and total.n == len(margins) == 40
    assert data.throughput is not None and sum(data.throughput["series"][0]) == 40
    page = build_report(pg_db, job_id)
    assert '<table id="evalbiasbench">' in page and "<svg" in page
