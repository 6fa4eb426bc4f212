"""Reads the API needs beyond `db.jobs` / `db.results`: stored scores across a tenant's jobs, and
the backlog counts behind back-pressure.

Scores page in (job_id, line, model) order, the results table's whole primary key, so each page is
one index range scan per job, and the cursor holds all three columns of the last row returned: the
next page resumes exactly after it, so every row appears exactly once across pages (a job scored by
several models has one row per line and model), whatever is written meanwhile to other jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select, tuple_

from db.models import jobs, results
from db.results import neutralized
from db.session import reading
from rmscore import cursor as cursors
from rmscore.vocabulary import JOB_ACTIVE

# Above this many jobs a tenant's scores are filtered by a join rather than an IN list.
_IN_LIST_MAX = 5000


@dataclass(frozen=True)
class ScoreQuery:
    job_id: str | None = None
    custom_id: str | None = None
    subset: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    truncated: bool | None = None
    correct: bool | None = None
    model: str | None = None


_CURSOR = "scores"
_CURSOR_FIELDS: tuple[cursors.Field, ...] = ("str", "int", "str")  # job_id, line, model: the whole key


def encode_cursor(job_id: str, line: int, model: str) -> str:
    return cursors.encode(_CURSOR, job_id, line, model)


def decode_cursor(cursor: str) -> tuple[str, int, str]:
    """(job_id, line, model) of the last row of the previous page; BadRequest for a bad cursor."""
    return cursors.decode(cursor, _CURSOR, _CURSOR_FIELDS)


def _score_value() -> Any:
    # Chat rows filter on their score, pairwise rows on the margin chosen - rejected.
    return func.coalesce(results.c.score, results.c.chosen_score - results.c.rejected_score)


def query_scores(
    db: Engine,
    q: ScoreQuery,
    *,
    tenant: str | None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Scored rows (errors left out) matching `q` among `tenant`'s jobs (None: all tenants).

    Returns (page, cursor of the next page or None).
    """
    cols = [
        results.c.job_id,
        results.c.line,
        results.c.model,
        results.c.custom_id,
        results.c.subset,
        results.c.score,
        results.c.chosen_score,
        results.c.rejected_score,
        results.c.correct,
        results.c.num_tokens,
        results.c.truncated,
        results.c.cached,
        results.c.model_identity,
        results.c.scored_at,
    ]
    base = select(*cols).where(results.c.error_code.is_(None))
    if q.custom_id is not None:
        base = base.where(results.c.custom_id == q.custom_id)
    if q.subset is not None:
        base = base.where(results.c.subset == q.subset)
    if q.min_score is not None:
        base = base.where(_score_value() >= q.min_score)
    if q.max_score is not None:
        base = base.where(_score_value() <= q.max_score)
    if q.truncated is not None:
        base = base.where(results.c.truncated.is_(q.truncated))
    if q.correct is not None:
        base = base.where(results.c.correct.is_(q.correct))
    if q.model is not None:
        base = base.where(results.c.model == q.model)
    after = decode_cursor(cursor) if cursor is not None else None
    order = (results.c.job_id, results.c.line, results.c.model)
    want = limit + 1

    with reading(db) as conn:
        ids: list[str] | None = None  # the jobs to read, in id order; None: a join or every job
        stmt = base
        if q.job_id is not None:
            owner = select(jobs.c.id).where(jobs.c.id == q.job_id)
            if tenant is not None:
                owner = owner.where(jobs.c.tenant == tenant)
            if conn.execute(owner).first() is None:
                return [], None  # another tenant's job reads as an empty one, as an unknown id does
            ids = [q.job_id]
        elif tenant is not None:
            found = conn.execute(
                select(jobs.c.id).where(jobs.c.tenant == tenant).order_by(jobs.c.id).limit(_IN_LIST_MAX + 1)
            ).scalars()
            ids = list(found)
            if not ids:
                return [], None
            if len(ids) > _IN_LIST_MAX:
                ids = None
                stmt = base.join(jobs, jobs.c.id == results.c.job_id).where(jobs.c.tenant == tenant)

        rows: list[Any] = []
        if ids is None:
            if after is not None:
                # A row-value comparison, so the primary key is sought rather than scanned (an OR is).
                stmt = stmt.where(tuple_(results.c.job_id, results.c.line, results.c.model) > tuple_(*after))
            rows = list(conn.execute(stmt.order_by(*order).limit(want)))
        else:
            # Resume inside the cursor's job with a range on (line, model), then read the jobs after
            # it: each is a direct seek on the primary key, never a scan of the jobs before.
            later = ids
            if after is not None:
                after_job, after_line, after_model = after
                if after_job in ids:
                    rest = tuple_(results.c.line, results.c.model) > tuple_(after_line, after_model)
                    rows = list(
                        conn.execute(stmt.where(results.c.job_id == after_job, rest).order_by(*order).limit(want))
                    )
                later = [i for i in ids if i > after_job]
            if len(rows) < want and later:
                rows += conn.execute(stmt.where(results.c.job_id.in_(later)).order_by(*order).limit(want - len(rows)))
    page = [score_record(r) for r in rows[:limit]]
    more = len(rows) > limit
    last = page[-1] if more else None
    return page, (encode_cursor(last["job_id"], last["line"], last["model"]) if last else None)


def score_record(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "job_id": row.job_id,
        "line": row.line,
        "model": row.model,
        "custom_id": row.custom_id,
        "subset": row.subset,
    }
    if row.chosen_score is not None:
        out.update(
            chosen_score=row.chosen_score,
            rejected_score=row.rejected_score,
            margin=row.chosen_score - row.rejected_score,
            correct=bool(row.correct),
        )
    else:
        out.update(score=row.score, num_tokens=row.num_tokens)
    out["truncated"] = bool(row.truncated)
    out["cached"] = bool(row.cached)
    out["neutralized"] = neutralized(row)
    out["scored_at"] = row.scored_at.isoformat() + "Z"
    return out


def queued_items(db: Engine, *, tenant: str | None = None) -> int:
    """Lines accepted but without an outcome yet, over active jobs (one tenant's, or all)."""
    stmt = select(func.coalesce(func.sum(jobs.c.total - jobs.c.completed - jobs.c.failed), 0)).where(
        jobs.c.status.in_(JOB_ACTIVE)
    )
    if tenant is not None:
        stmt = stmt.where(jobs.c.tenant == tenant)
    with reading(db) as conn:
        return int(conn.execute(stmt).scalar_one())


def jobs_by_status(db: Engine) -> dict[str, int]:
    with reading(db) as conn:
        rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
    return {s: int(n) for s, n in rows}


def lines_by_outcome(db: Engine) -> dict[str, int]:
    """Lines scored and failed, over every job (for /metrics)."""
    with reading(db) as conn:
        done, failed = conn.execute(
            select(func.coalesce(func.sum(jobs.c.completed), 0), func.coalesce(func.sum(jobs.c.failed), 0))
        ).one()
    return {"scored": int(done), "failed": int(failed)}
