"""Two models on the same pairs: accuracy side by side per subset, agreement, and where they disagree.

A job scored by several models (`db.jobs.create_job(models=...)`) has one result per line and
model. Two models agree on a pair when both prefer the same side (both right or both wrong), and
on a listwise line when both pick the same best response (accuracy there is the mean RewardBench 2
credit of labelled lines); only lines both scored (no error on either side) count.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Integer, and_, cast, func, select

from db.jobs import get_job, job_models
from db.models import results
from db.session import reading
from rmscore.errors import BadRequest


def _models(available: list[str], wanted: list[str] | None) -> tuple[str, str]:
    if len(available) < 2:
        raise BadRequest("this job is scored by one model: nothing to compare", code="single_model")
    pick = wanted or available[:2]
    unknown = [m for m in pick if m not in available]
    if unknown:
        raise BadRequest(
            f"the job is not scored by {', '.join(unknown)}; its models: {', '.join(available)}",
            code="unknown_model",
        )
    if len(pick) != 2 or pick[0] == pick[1]:
        raise BadRequest("name two different models of the job to compare", code="invalid_models")
    return pick[0], pick[1]


def compare_job(
    db: Engine,
    job_id: str,
    *,
    tenant: str | None = None,
    models: list[str] | None = None,
    after_line: int = 0,
    limit: int = 100,
) -> dict[str, Any]:
    """Per-subset accuracy of two models, their agreement, and one page of the pairs they disagree on
    (in line order, after `after_line`); models default to the job's first two."""
    job = get_job(db, job_id, tenant=tenant)
    if job.kind == "chat":
        raise BadRequest("comparing models needs a pairwise or listwise job", code="not_pairwise")
    a_model, b_model = _models(job_models(db, job), models)
    if job.kind == "listwise":
        return _compare_listwise(db, job.id, a_model, b_model, after_line, limit)
    a, b = results.alias("a"), results.alias("b")
    both = and_(
        a.c.job_id == job.id,
        a.c.model == a_model,
        a.c.correct.is_not(None),
        b.c.job_id == a.c.job_id,
        b.c.line == a.c.line,
        b.c.model == b_model,
        b.c.correct.is_not(None),
    )
    per_subset = (
        select(
            a.c.subset,
            func.count(),
            func.sum(cast(a.c.correct, Integer)),
            func.sum(cast(b.c.correct, Integer)),
            func.sum(cast(a.c.correct == b.c.correct, Integer)),
        )
        .where(both)
        .group_by(a.c.subset)
    )
    page = (
        select(
            a.c.line,
            a.c.custom_id,
            a.c.subset,
            a.c.chosen_score,
            a.c.rejected_score,
            a.c.correct,
            b.c.chosen_score.label("b_chosen"),
            b.c.rejected_score.label("b_rejected"),
            b.c.correct.label("b_correct"),
        )
        .where(both, a.c.correct != b.c.correct, a.c.line > after_line)
        .order_by(a.c.line)
        .limit(limit + 1)
    )
    with reading(db) as conn:
        tallies = conn.execute(per_subset).all()
        rows = conn.execute(page).all()

    def acc(right: int, n: int) -> float | None:
        return right / n if n else None

    subsets = []
    n = right_a = right_b = agreed = 0
    for subset, count, ra, rb, ag in sorted(tallies, key=lambda t: t[0] or ""):
        count, ra, rb, ag = int(count), int(ra or 0), int(rb or 0), int(ag or 0)
        n, right_a, right_b, agreed = n + count, right_a + ra, right_b + rb, agreed + ag
        subsets.append(
            {
                "subset": subset or "all",
                "n": count,
                "accuracy": {a_model: acc(ra, count), b_model: acc(rb, count)},
                "agreement": acc(ag, count),
            }
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "job_id": job.id,
        "kind": job.kind,
        "models": [a_model, b_model],
        "n": n,
        "accuracy": {a_model: acc(right_a, n), b_model: acc(right_b, n)},
        "agreement": acc(agreed, n),
        "disagreements_total": n - agreed,
        "subsets": subsets,
        "disagreements": [
            {
                "line": r.line,
                "custom_id": r.custom_id,
                "subset": r.subset,
                "scores": {
                    a_model: {"chosen_score": r.chosen_score, "rejected_score": r.rejected_score, "correct": r.correct},
                    b_model: {"chosen_score": r.b_chosen, "rejected_score": r.b_rejected, "correct": r.b_correct},
                },
            }
            for r in rows
        ],
        "next_cursor": rows[-1].line if more and rows else None,
    }


def _compare_listwise(
    db: Engine, job_id: str, a_model: str, b_model: str, after_line: int, limit: int
) -> dict[str, Any]:
    """`compare_job` for a listwise job: agreement on `best`, accuracy as mean credit (None unlabelled)."""
    a, b = results.alias("a"), results.alias("b")
    both = and_(
        a.c.job_id == job_id,
        a.c.model == a_model,
        a.c.best.is_not(None),
        b.c.job_id == a.c.job_id,
        b.c.line == a.c.line,
        b.c.model == b_model,
        b.c.best.is_not(None),
    )
    per_subset = (
        select(
            a.c.subset,
            func.count(),
            func.count(a.c.credit),  # labelled lines (count skips NULL)
            func.sum(a.c.credit),
            func.sum(b.c.credit),
            func.sum(cast(a.c.best == b.c.best, Integer)),
        )
        .where(both)
        .group_by(a.c.subset)
    )
    page = (
        select(
            a.c.line,
            a.c.custom_id,
            a.c.subset,
            a.c.best,
            a.c.best_score,
            a.c.credit,
            b.c.best.label("b_best"),
            b.c.best_score.label("b_best_score"),
            b.c.credit.label("b_credit"),
        )
        .where(both, a.c.best != b.c.best, a.c.line > after_line)
        .order_by(a.c.line)
        .limit(limit + 1)
    )
    with reading(db) as conn:
        tallies = conn.execute(per_subset).all()
        rows = conn.execute(page).all()

    def share(x: float, n: int) -> float | None:
        return x / n if n else None

    subsets = []
    n = labelled = agreed = 0
    got_a = got_b = 0.0
    for subset, count, lab, ca, cb, ag in sorted(tallies, key=lambda t: t[0] or ""):
        count, lab, ag = int(count), int(lab or 0), int(ag or 0)
        n, labelled, agreed = n + count, labelled + lab, agreed + ag
        got_a, got_b = got_a + float(ca or 0), got_b + float(cb or 0)
        subsets.append(
            {
                "subset": subset or "all",
                "n": count,
                "accuracy": {a_model: share(float(ca or 0), lab), b_model: share(float(cb or 0), lab)},
                "agreement": share(ag, count),
            }
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "job_id": job_id,
        "kind": "listwise",
        "models": [a_model, b_model],
        "n": n,
        "accuracy": {a_model: share(got_a, labelled), b_model: share(got_b, labelled)},
        "agreement": share(agreed, n),
        "disagreements_total": n - agreed,
        "subsets": subsets,
        "disagreements": [
            {
                "line": r.line,
                "custom_id": r.custom_id,
                "subset": r.subset,
                "scores": {
                    a_model: {"best": r.best, "best_score": r.best_score, "correct": r.credit},
                    b_model: {"best": r.b_best, "best_score": r.b_best_score, "correct": r.b_credit},
                },
            }
            for r in rows
        ],
        "next_cursor": rows[-1].line if more and rows else None,
    }
