"""`POST /v1/score`: score a few items now, through the workers' online lane (api/online.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api import online
from api.deps import CallerDep, StateDep
from api.errors import responses
from api.schemas import ScoreRequest, ScoreResponse

router = APIRouter(prefix="/v1", tags=["score"])


@router.post(
    "/score",
    response_model=ScoreResponse,
    summary="Score a few items synchronously",
    responses=responses(400, 401, 413, 422, 429, 502, 503, 504),
)
async def score(body: ScoreRequest, caller: CallerDep, state: StateDep) -> ScoreResponse:
    """Score up to `RMSCORE_SYNC_MAX_ITEMS` items (default 64) and answer with one record per item,
    `line` being its 1-based position; 504 if not scored within `RMSCORE_SYNC_TIMEOUT` seconds.
    Items are chat, pairwise, or `{"text": ...}` (a conversation already rendered with the chat
    template: every BOS string in it is removed and exactly one is added, as the card does)."""
    records, todo = online.parse(body.items, state)
    options = body.options.model_dump(exclude_none=True) if body.options else None
    model, reply = await online.score(state, caller.tenant, body.model, todo, options)
    identity: dict[str, Any] | None = None
    if reply is not None:
        for rec in reply["records"]:
            records[rec["line"]] = rec
        identity = reply.get("model_identity")
    # Raw records, exactly as `rmscore score` writes them.
    return JSONResponse(  # type: ignore[return-value]
        {"model": model, "results": [records[i] for i in sorted(records)], "model_identity": identity}
    )
