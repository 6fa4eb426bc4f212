"""Listwise (best-of-N) job summaries from the results table: the spread of best and worst scores,
and the evaluation of labelled lines (mean RewardBench 2 credit per subset, RewardBench 2's table).

Aggregates run in the database (one row back however many lines); only the Ties subset's lines are
read one by one, since RewardBench 2 scores that subset from every response's score.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, select

from db.models import items, results
from db.results import job_accuracy
from rmscore.evaluation import TIES, TiesLine, evaluate_listwise, rewardbench2_ties

_AGGS = (func.avg, func.min, func.max)


def best_of_n_spread(conn: Connection, job_id: str, model: str) -> dict[str, Any] | None:
    """`{"n", "best": {mean, min, max}, "worst": {...}, "margin": {...}}` over the scored lines, the
    margin being best score - worst score; None before a line is scored."""
    margin = results.c.best_score - results.c.worst_score
    row = conn.execute(
        select(
            func.count(),
            *(agg(col) for col in (results.c.best_score, results.c.worst_score, margin) for agg in _AGGS),
        ).where(results.c.job_id == job_id, results.c.model == model, results.c.best_score.is_not(None))
    ).one()
    if not row[0]:
        return None
    values = [None if v is None else float(v) for v in row[1:]]
    stats = [dict(zip(("mean", "min", "max"), values[i : i + 3], strict=True)) for i in range(0, 9, 3)]
    return {"n": int(row[0]), "best": stats[0], "worst": stats[1], "margin": stats[2]}


def ties_lines(conn: Connection, job_id: str, model: str) -> list[TiesLine]:
    """(custom_id, scores, correct ones) of the job's scored lines in RewardBench 2's Ties subset."""
    rows = conn.execute(
        select(results.c.custom_id, results.c.scores, items.c.payload)
        .select_from(results.join(items, and_(items.c.job_id == results.c.job_id, items.c.line == results.c.line)))
        .where(
            results.c.job_id == job_id,
            results.c.model == model,
            func.lower(results.c.subset) == TIES.lower(),
            results.c.credit.is_not(None),
        )
        .order_by(results.c.line)
    ).all()
    return [(r.custom_id, list(r.scores), int(r.payload.get("n_chosen") or 0)) for r in rows]


Summary = dict[str, Any] | None


def listwise_evaluation(conn: Connection, job_id: str, model: str) -> tuple[Summary, Summary]:
    """(accuracy, evaluation) of one model's labelled lines: `job_accuracy`'s shape and
    `rmscore.evaluation.evaluate_listwise`'s; both None when no line is labelled."""
    accuracy = job_accuracy(conn, job_id, model, "listwise")
    if accuracy is None:
        return None, None
    has_ties = any(name.strip().lower() == TIES.lower() for name in accuracy["subsets"])
    ties = rewardbench2_ties(ties_lines(conn, job_id, model)) if has_ties else None
    return accuracy, evaluate_listwise(accuracy, ties)
