"""`POST /v1/score`: score a few items now, through the workers' online lane (api/online.py).

`store: true` keeps the answer as a completed job of the caller (db/online.py). The API stores it,
not the worker: the API holds the request, its tenant, its `Idempotency-Key` and the database, and
the worker's online lane stays out of the database so it answers between micro-batches. Storing
comes after scoring, so its failure cannot take the scores back: the answer is then 200 with
`stored: false` and `store_error`, never a 5xx. What can be refused is refused before scoring: text
or mixed kinds (422), bad metadata (400), a key reused for another request (422).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api import fingerprint as fingerprints
from api import online, submission
from api.deps import CallerDep, IdempotencyKey, StateDep
from api.errors import responses
from api.schemas import ScoreRequest, ScoreResponse
from api.state import ApiState
from db.online import store_online_job, stored_answer, stored_kind
from db.session import utcnow
from rmscore import formats
from rmscore.errors import BadRequest, RmscoreError

router = APIRouter(prefix="/v1", tags=["score"])
log = logging.getLogger("api")


@router.post(
    "/score",
    response_model=ScoreResponse,
    summary="Score a few items synchronously",
    responses=responses(400, 401, 413, 422, 429, 502, 503, 504),
)
async def score(
    body: ScoreRequest, caller: CallerDep, state: StateDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:  # raw records, as `rmscore score` writes them; the schema is response_model's
    """Score up to `RMSCORE_SYNC_MAX_ITEMS` items (default 64) and answer with one record per item,
    `line` being its 1-based position; 504 if not scored within `RMSCORE_SYNC_TIMEOUT` seconds.
    Items are chat, pairwise, or `{"text": ...}` (a conversation already rendered with the chat
    template: every BOS string in it is removed and exactly one is added, as the card does).

    `store: true` also keeps the answer as a completed job (`job_id`); with an `Idempotency-Key`,
    a retry of the same request answers with the stored job (header `Idempotent-Replayed: true`,
    nothing scored again) and the key with another request is a 422 `idempotency_key_reused`."""
    if body.metadata is not None and not body.store:
        raise BadRequest("metadata is kept only with store: true", code="invalid_request")
    fingerprint = None
    if body.store:
        fingerprint = fingerprints.json_request("score", body.model_dump(mode="json"), {})
        earlier = await anyio.to_thread.run_sync(
            submission.earlier_job, state.db, caller.tenant, idempotency_key, fingerprint
        )
        if earlier is not None:
            model, recs, stored_identity = await anyio.to_thread.run_sync(
                stored_answer, state.db, earlier.job.id, caller.tenant
            )
            return JSONResponse(
                {"model": model, "results": recs, "model_identity": stored_identity, "stored": True,
                 "job_id": earlier.job.id},
                headers={"Idempotent-Replayed": "true"},
            )  # fmt: skip
    parsed: list[formats.Parsed] = []
    records, todo = online.parse(body.items, state, parsed if body.store else None)
    metadata = None
    if body.store:
        stored_kind(parsed)  # 422 before any work: text items, or more than one kind
        metadata = submission.check_metadata(body.metadata, state.config)
    options = body.options.model_dump(exclude_none=True) if body.options else None
    started = utcnow()
    model, reply = await online.score(state, caller.tenant, body.model, todo, options)
    identity: dict[str, Any] | None = None
    if reply is not None:
        for rec in reply["records"]:
            records[rec["line"]] = rec
        identity = reply.get("model_identity")
    # Raw records, exactly as `rmscore score` writes them.
    answer: dict[str, Any] = {"model": model, "results": [records[i] for i in sorted(records)],
                              "model_identity": identity}  # fmt: skip
    if body.store:
        answer.update(await _store(state, caller.tenant, parsed, records, model, identity, started, metadata,
                                   options, idempotency_key, fingerprint))  # fmt: skip
    return JSONResponse(answer)


async def _store(
    state: ApiState,
    tenant: str,
    parsed: list[formats.Parsed],
    records: dict[int, dict[str, Any]],
    model: str,
    identity: dict[str, Any] | None,
    started: datetime,
    metadata: dict[str, Any] | None,
    options: dict[str, Any] | None,
    idempotency_key: str | None,
    fingerprint: str | None,
) -> dict[str, Any]:
    """`stored`, `job_id`, or why not: the scores are already the client's, so no error escapes."""

    def write() -> str:
        created = store_online_job(
            state.db, parsed, records, model=model, identity=identity, tenant=tenant, started_at=started,
            metadata=metadata, options=options, idempotency_key=idempotency_key, fingerprint=fingerprint,
            max_items=state.settings.max_items_per_job,
        )  # fmt: skip
        return created.job.id

    try:
        job_id = await anyio.to_thread.run_sync(write)
    except RmscoreError as e:  # a concurrent request took the key, say: the tenant may read why
        return {"stored": False, "job_id": None, "store_error": {"code": e.code, "message": e.message}}
    except Exception as e:  # noqa: BLE001 - database text (hosts, SQL) goes to the log, not the tenant
        log.warning("an online answer was not stored: %s: %s", type(e).__name__, e)
        return {"stored": False, "job_id": None,
                "store_error": {"code": "store_failed", "message": "the database did not take the answer; "
                                "the scores stand, resend with store: true to keep them"}}  # fmt: skip
    return {"stored": True, "job_id": job_id}
