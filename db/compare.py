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
    """Per-subset accuracy of two models, their agreement, and one page of the lines they disagree on
    (in line order, after `after_line`); models default to the job's first two."""
    job = get_job(db, job_id, tenant=tenant)
    if job.kind == "chat":
        raise BadRequest("comparing models needs a pairwise or listwise job", code="not_pairwise")
    a_model, b_model = _models(job_models(db, job), models)
    a, b = results.alias("a"), results.alias("b")
    if job.kind == "listwise":
        # Agreement: the same best response. Accuracy: mean credit over the labelled lines (count
        # skips NULL credit, so unlabelled lines count for agreement only).
        scored, same = a.c.best, a.c.best == b.c.best
        tally = (func.count(a.c.credit), func.sum(a.c.credit), func.sum(b.c.credit))
        shown = {"best": "best", "best_score": "best_score", "correct": "credit"}
    else:
        scored, same = a.c.correct, a.c.correct == b.c.correct
        tally = (func.count(), func.sum(cast(a.c.correct, Integer)), func.sum(cast(b.c.correct, Integer)))
        shown = {"chosen_score": "chosen_score", "rejected_score": "rejected_score", "correct": "correct"}
    both = and_(
        a.c.job_id == job.id,
        a.c.model == a_model,
        scored.is_not(None),
        b.c.job_id == a.c.job_id,
        b.c.line == a.c.line,
        b.c.model == b_model,
        b.c[scored.name].is_not(None),
    )
    per_subset = (
        select(a.c.subset, func.count(), *tally, func.sum(cast(same, Integer))).where(both).group_by(a.c.subset)
    )
    page = (
        select(
            a.c.line,
            a.c.custom_id,
            a.c.subset,
            *(a.c[col].label(f"a_{key}") for key, col in shown.items()),
            *(b.c[col].label(f"b_{key}") for key, col in shown.items()),
        )
        .where(both, ~same, a.c.line > after_line)
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
        count, lab, ag, ca, cb = int(count), int(lab or 0), int(ag or 0), float(ca or 0), float(cb or 0)
        n, labelled, agreed, got_a, got_b = n + count, labelled + lab, agreed + ag, got_a + ca, got_b + cb
        subsets.append(
            {
                "subset": subset or "all",
                "n": count,
                "accuracy": {a_model: share(ca, lab), b_model: share(cb, lab)},
                "agreement": share(ag, count),
            }
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "job_id": job.id,
        "kind": job.kind,
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
                    m: {key: r._mapping[f"{side}_{key}"] for key in shown}
                    for m, side in ((a_model, "a"), (b_model, "b"))
                },
            }
            for r in rows
        ],
        "next_cursor": rows[-1].line if more and rows else None,
    }
