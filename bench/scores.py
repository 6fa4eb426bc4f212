"""Time `GET /v1/scores` pages through a real `rmscore api` on a million stored results.

    .venv/bin/python bench/scores.py [--rows 1000000] [--database-url URL] [--limit 1000] [--repeat 30]
    .venv/bin/python bench/scores.py --mode function   # db.scores.query_scores in-process instead

Fills a fresh database (default: a temporary SQLite file) with two tenants' chat jobs, starts
`rmscore api` on a free loopback port against it (auth enabled, a key for tenant "a"), and times
one page of each filter shape over HTTP (httpx, keep-alive; the time includes the API's JSON
encoding and the transfer of the body). Reports p50/p99 in ms per query. Not a test: the numbers
go in the report.
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
sys.path.insert(0, str(REPO / "tests"))  # the process harness (tests/harness.py)


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


def percentiles(times: list[float]) -> dict[str, float]:
    """p50 / p99 in ms (p99 of 30 samples is close to the slowest, by design: what a tail looks like)."""
    ms = sorted(t * 1000 for t in times)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {"p50": round(statistics.median(ms), 1), "p99": round(q[98], 1), "max": round(ms[-1], 1)}


def timed(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    fn()  # warm-up (connection, statement cache), not counted
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


# The query shapes: API query parameters; "job" and "deep" are filled in at run time.
CASES: dict[str, dict[str, object]] = {
    "job_id, first page": {"job_id": "job"},
    "job_id, page 41 (cursor)": {"job_id": "job", "cursor": "deep"},
    "tenant, first page": {},
    "tenant, page 41 (cursor in the 3rd job)": {"cursor": "deep"},
    "custom_id": {"custom_id": "job-777"},
    "subset (tenant-wide)": {"subset": "s7"},
    "job_id + min_score=6 (rare)": {"job_id": "job", "min_score": 6.0},
    "min_score=7 (tenant-wide, rare)": {"min_score": 7.0},
    "truncated=true (tenant-wide, rare)": {"truncated": True},
}


def resolve(params: dict[str, object], job: str, deep: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in params.items():
        if k == "job_id":
            v = job
        elif k == "custom_id":
            v = f"{job}-777"
        elif k == "cursor":
            v = deep
        out[k] = v
    return out


def run_api(db_url: str, db, job: str, args, tmp: Path) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    import httpx
    from benchkit import start_bench_api
    from harness import stop_proc

    from db.api_keys import create_key

    key, _ = create_key(db, "bench-scores", tenant="a")
    url, proc = start_bench_api(db_url, args.broker_url, tmp / "api.log", auth="enabled")
    out: dict[str, dict[str, float]] = {}
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:

            def get(params: dict[str, object]) -> dict:  # type: ignore[type-arg]
                q = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items()}
                r = client.get("/v1/scores", params={**q, "limit": args.limit})
                if r.status_code != 200:
                    raise RuntimeError(f"GET /v1/scores {params}: {r.status_code} {r.text[:500]}")
                return r.json()  # type: ignore[no-any-return]

            deep = get({"job_id": job})["next_cursor"]
            for _ in range(39):  # page 41 of the job (with 1,000-row pages)
                deep = get({"job_id": job, "cursor": deep})["next_cursor"]
            for name, params in CASES.items():
                p = resolve(params, job, deep)
                rows = len(get(p)["data"])
                out[name] = {**percentiles(timed(lambda p=p: get(p), args.repeat)), "rows": rows}
                print(f"  api {name}: {out[name]}", file=sys.stderr)
    finally:
        stop_proc(proc)
    return out


def run_function(db, job: str, args) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    from db.scores import ScoreQuery, query_scores

    _, deep = query_scores(db, ScoreQuery(job_id=job), tenant="a", limit=args.limit)
    for _ in range(39):
        _, deep = query_scores(db, ScoreQuery(job_id=job), tenant="a", limit=args.limit, cursor=deep)
    out: dict[str, dict[str, float]] = {}
    for name, params in CASES.items():
        p = resolve(params, job, deep)
        cursor = p.pop("cursor", None)
        q = ScoreQuery(**p)  # type: ignore[arg-type]
        rows = len(query_scores(db, q, tenant="a", limit=args.limit, cursor=cursor)[0])  # type: ignore[arg-type]
        times = timed(lambda q=q, c=cursor: query_scores(db, q, tenant="a", limit=args.limit, cursor=c), args.repeat)
        out[name] = {**percentiles(times), "rows": rows}
        print(f"  function {name}: {out[name]}", file=sys.stderr)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--mode", choices=["api", "function", "both"], default="api")
    ap.add_argument("--limit", type=int, default=1000, help="rows per page (the API's cap is 1000)")
    ap.add_argument("--repeat", type=int, default=30, help="timed requests per query shape")
    ap.add_argument("--broker-url", default="redis://127.0.0.1:6379/15", help="the API's broker (not used here)")
    args = ap.parse_args()

    from harness import migrated

    tmp = Path(tempfile.mkdtemp(prefix="rmscore-bench-scores-"))
    db_url = args.database_url or f"sqlite:///{tmp / 'scores.db'}"
    db = migrated(db_url)
    t0 = time.perf_counter()
    owned = fill(db, args.rows)
    print(f"stored {args.rows:,} results in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    # Planner statistics, as autovacuum (PostgreSQL) or a periodic ANALYZE (SQLite) keeps them.
    from sqlalchemy import text

    with db.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    job = owned["a"][2]
    report: dict[str, object] = {
        "rows": args.rows,
        "database": db.dialect.name,
        "page": args.limit,
        "repeat": args.repeat,
    }
    if args.mode in ("api", "both"):
        report["api_ms"] = run_api(db_url, db, job, args, tmp)
    if args.mode in ("function", "both"):
        report["function_ms"] = run_function(db, job, args)
    print(json.dumps(report, indent=2))
    for mode in ("api_ms", "function_ms"):
        if mode in report:
            print(
                f"\n| {mode[:-3]}: {args.limit}-row page, {db.dialect.name} | p50 ms | p99 ms | rows |", file=sys.stderr
            )
            print("|---|---|---|---|", file=sys.stderr)
            for name, v in report[mode].items():  # type: ignore[attr-defined]
                print(f"| {name} | {v['p50']} | {v['p99']} | {int(v['rows'])} |", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
