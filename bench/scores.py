"""Time `GET /v1/scores` queries (db.scores.query_scores) on a million stored results.

    .venv/bin/python bench/scores.py [--rows 1000000] [--database-url URL]

Fills a fresh database (default: a temporary SQLite file) with two tenants' chat jobs, then times
one page of each filter the API offers. Not a test: the numbers go in the report.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def fill(db, rows: int, jobs_per_tenant: int = 5) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    from db.models import jobs, results
    from db.session import utcnow, writing

    rng = random.Random(0)
    now = utcnow()
    per_job = rows // (2 * jobs_per_tenant)
    owned: dict[str, list[str]] = {"a": [], "b": []}
    for tenant in owned:
        for j in range(jobs_per_tenant):
            job_id = f"{tenant}{j:031d}"
            owned[tenant].append(job_id)
            with writing(db) as conn:
                conn.execute(
                    jobs.insert(),
                    [
                        {
                            "id": job_id,
                            "tenant": tenant,
                            "kind": "chat",
                            "model": "tiny",
                            "status": "completed",
                            "total": per_job,
                            "completed": per_job,
                            "failed": 0,
                            "created_at": now,
                            "options": {},
                        }
                    ],
                )
                batch = []
                for line in range(1, per_job + 1):
                    batch.append(
                        {
                            "job_id": job_id,
                            "line": line,
                            "model": "tiny",
                            "custom_id": f"{job_id}-{line}",
                            "subset": f"s{line % 20}",
                            "score": rng.gauss(0, 2),
                            "num_tokens": 50,
                            "truncated": line % 10_000 == 0,
                            "scored_at": now,
                        }
                    )
                    if len(batch) == 10_000:
                        conn.execute(results.insert(), batch)
                        batch = []
                if batch:
                    conn.execute(results.insert(), batch)
    return owned


def timed(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()

    from db.migrate import upgrade
    from db.scores import ScoreQuery, query_scores
    from db.session import get_engine

    tmp = Path(tempfile.mkdtemp(prefix="rmscore-bench-scores-"))
    db = get_engine(args.database_url or f"sqlite:///{tmp / 'scores.db'}")
    upgrade(db)
    t0 = time.perf_counter()
    owned = fill(db, args.rows)
    print(f"stored {args.rows:,} results in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    # Planner statistics, as autovacuum (PostgreSQL) or a periodic ANALYZE (SQLite) keeps them.
    from sqlalchemy import text

    with db.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    job = owned["a"][2]
    _, deep_cursor = query_scores(db, ScoreQuery(job_id=job), tenant="a", limit=1000)
    for _ in range(40):  # 40 pages in
        _, deep_cursor = query_scores(db, ScoreQuery(job_id=job), tenant="a", limit=1000, cursor=deep_cursor)

    cases = {
        "tenant, first page": (ScoreQuery(), None),
        "job_id, page 41": (ScoreQuery(job_id=job), deep_cursor),
        "tenant, page 41 (cursor in the 3rd job)": (ScoreQuery(), deep_cursor),
        "job_id": (ScoreQuery(job_id=job), None),
        "custom_id": (ScoreQuery(custom_id=f"{job}-777"), None),
        "subset (tenant-wide)": (ScoreQuery(subset="s7"), None),
        "job_id + score >= 6 (rare)": (ScoreQuery(job_id=job, min_score=6.0), None),
        "score >= 7 (tenant-wide, rare)": (ScoreQuery(min_score=7.0), None),
        "truncated (tenant-wide, rare)": (ScoreQuery(truncated=True), None),
    }
    report = {"rows": args.rows, "database": db.dialect.name, "page": 100, "ms_median": {}}
    for name, (q, cursor) in cases.items():
        ms = timed(lambda q=q, cursor=cursor: query_scores(db, q, tenant="a", limit=100, cursor=cursor))
        report["ms_median"][name] = round(ms, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
