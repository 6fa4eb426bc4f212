"""`POST /v1/score`: score a few items now, on the workers' high-priority queue."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import CallerDep, StateDep
from api.errors import responses
from api.schemas import ScoreRequest, ScoreResponse
from api.submission import parse_items
from db.jobs import check_options, resolve_model
from rmscore import failures, formats, keys
from rmscore.errors import Overloaded, RmscoreError, ScoringFailed, Timeout, TooLarge, Unavailable

log = logging.getLogger("api")
router = APIRouter(prefix="/v1", tags=["score"])


def _send(
    state: Any,
    model: str,
    items: list[dict[str, Any]],
    overflow: str | None,
    reply_to: str,
    control_tokens: str | None = None,
) -> None:
    """Queue the request for `model`'s workers: 429 past the sync queue's cap, 503 with no live worker
    or no broker (kombu and redis raise their own connection errors; they all mean the latter)."""
    try:
        r = state.redis
        queue = keys.sync_queue(model)
        cap = state.config.max_sync_queue
        if cap is not None and r.llen(queue) >= cap:
            raise Overloaded(f"{cap} synchronous requests are already waiting for {model}", retry_after=5)
        if not any(r.scan_iter(match=keys.worker_heartbeat(f"{model}@*"), count=1000)):
            raise Unavailable(f"no live worker serves {model}", code="no_worker", retry_after=10)
        kwargs: dict[str, Any] = {"items": items, "reply_to": reply_to, "overflow": overflow}
        if control_tokens:  # only when asked: a worker from before the option would refuse the argument
            kwargs["control_tokens"] = control_tokens
        state.celery.send_task(
            keys.TASK_SCORE_SYNC,
            kwargs=kwargs,
            queue=queue,
            exchange="",
            routing_key=queue,
            expires=state.settings.sync_timeout,
            ignore_result=True,
        )
    except RmscoreError:
        raise
    except Exception as e:  # noqa: BLE001 - any other failure here is the broker's
        raise Unavailable(f"the broker is unavailable ({type(e).__name__})", code="broker_unavailable") from e


@router.post(
    "/score",
    response_model=ScoreResponse,
    summary="Score a few items synchronously",
    responses=responses(400, 401, 413, 422, 429, 502, 503, 504),
)
async def score(body: ScoreRequest, caller: CallerDep, state: StateDep) -> ScoreResponse:
    """Score up to `RMSCORE_SYNC_MAX_ITEMS` items (default 64) and answer with one record per item,
    `line` being its 1-based position; 504 if not scored within `RMSCORE_SYNC_TIMEOUT` seconds."""
    from rmscore.keys import sync_reply as reply_key

    settings = state.settings
    if len(body.items) > settings.sync_max_items:
        raise TooLarge(
            f"at most {settings.sync_max_items} items per request; submit a job for more", code="too_many_items"
        )
    model = resolve_model(body.model, settings)
    options = check_options(body.options.model_dump(exclude_none=True) if body.options else None)
    records: dict[int, dict[str, Any]] = {}
    todo: list[dict[str, Any]] = []
    for p in parse_items(body.items, None, settings):  # each item its own kind
        if isinstance(p, formats.LineError):
            records[p.line] = formats.error_record(p.line, p.custom_id, p.code, p.message, p.subset)
        else:
            todo.append(
                {
                    "kind": p.kind,
                    "line": p.line,
                    "custom_id": p.custom_id,
                    "subset": getattr(p, "subset", None),
                    "payload": p.payload(),
                }
            )
    identity = None
    if todo:
        reply_to = reply_key(uuid.uuid4().hex)
        await anyio.to_thread.run_sync(
            _send, state, model, todo, options.get("overflow"), reply_to, options.get("control_tokens")
        )
        try:
            got = await state.aioredis.blpop([reply_to], timeout=settings.sync_timeout)
        except RmscoreError:
            raise
        except Exception as e:  # noqa: BLE001 - the broker went away while we waited
            raise Unavailable(f"lost the broker while waiting: {type(e).__name__}", code="broker_unavailable") from e
        if got is None:
            raise Timeout(f"not scored within {settings.sync_timeout:g}s; the workers are busy", code="timeout")
        reply = json.loads(got[1])
        if "error" in reply:
            # The worker's message is exception text (hosts, paths, SQL): the log gets it, the tenant
            # a fixed message (rmscore/failures.py).
            log.warning("sync scoring failed on a worker: %s", reply["error"].get("message"))
            raise ScoringFailed(failures.request_failed(), code="scoring_failed")
        for rec in reply["records"]:
            records[rec["line"]] = rec
        identity = reply.get("model_identity")
    # Raw records, exactly as `rmscore score` writes them.
    return JSONResponse(  # type: ignore[return-value]
        {"model": model, "results": [records[i] for i in sorted(records)], "model_identity": identity}
    )
