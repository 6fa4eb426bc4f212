"""`GET /v1/scores`: query stored scores across the caller's jobs."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api.deps import CallerDep, DbDep
from api.errors import responses
from api.schemas import ScorePage
from db.scores import ScoreQuery, query_scores
from rmscore.errors import BadRequest

router = APIRouter(prefix="/v1", tags=["scores"])


def _finite(value: float | None, name: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise BadRequest(f"{name} must be a finite number", code="invalid_filter")
    return value


@router.get("/scores", response_model=ScorePage, summary="Query stored scores", responses=responses(400, 401, 422))
def scores(
    caller: CallerDep,
    db: DbDep,
    job_id: Annotated[str | None, Query(max_length=64)] = None,
    custom_id: Annotated[str | None, Query(max_length=512)] = None,
    subset: Annotated[str | None, Query(max_length=200)] = None,
    min_score: Annotated[float | None, Query(description="Chat: score >=; pairwise: margin >=.")] = None,
    max_score: Annotated[float | None, Query(description="Chat: score <=; pairwise: margin <=.")] = None,
    truncated: Annotated[bool | None, Query()] = None,
    correct: Annotated[bool | None, Query(description="Pairwise: chosen_score > rejected_score.")] = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> JSONResponse:  # rows as stored; the schema is response_model's
    """Scored lines (errors left out) of your jobs, in (job_id, line, model) order; page with `cursor`.

    The score range filters chat rows on `score` and pairwise rows on `margin`
    (chosen_score - rejected_score). Another tenant's job id matches nothing.
    """
    q = ScoreQuery(
        job_id=job_id,
        custom_id=custom_id,
        subset=subset,
        min_score=_finite(min_score, "min_score"),
        max_score=_finite(max_score, "max_score"),
        truncated=truncated,
        correct=correct,
        model=model,
    )
    page, next_cursor = query_scores(db, q, tenant=caller.scope, limit=limit, cursor=cursor or None)
    return JSONResponse(
        {"data": page, "next_cursor": next_cursor, "has_more": next_cursor is not None}
    )
