"""`/healthz` (the process answers), `/readyz` (database, broker, a live worker), `/metrics`.

What is public: `/healthz` and `/readyz` answer anyone (load balancers and orchestrators probe them
without credentials), so they say only ok / not ok per component. Why a check failed (exception
text, host names, worker counts) goes to the log. `/metrics` counts every tenant's jobs and lines,
so it needs an admin API key or `RMSCORE_METRICS_TOKEN` (a Prometheus `authorization` bearer).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.auth import authorize_operator
from api.deps import StateDep
from api.errors import responses
from api.schemas import Health, Ready
from db.session import reading
from rmscore.liveness import ModelLiveness, model_liveness

log = logging.getLogger("api")
router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


def _check(name: str, fn: Any) -> dict[str, Any]:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - a failed check is an answer, not an error
        log.warning("readyz: %s not ready: %s: %s", name, type(e).__name__, e)
        return {"ok": False}
    return {"ok": True}


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Ready to score: database, broker and a live worker for the default model",
    responses={503: {"model": Ready, "description": "Not ready"}},
)
def readyz(state: StateDep) -> Any:
    def database() -> None:
        with reading(state.db) as conn:
            conn.execute(text("SELECT 1"))

    def broker() -> None:
        state.redis.ping()

    models: dict[str, ModelLiveness] = {}

    def workers() -> None:
        # Every model jobs may name: one without a worker is accepted, then waits; say so here.
        for name in state.settings.model_names:
            models[name] = model_liveness(state.redis, name)
        default = models[state.default_model]
        if not default.live:
            raise RuntimeError(default.problem())

    checks = {"database": _check("database", database), "broker": _check("broker", broker)}
    checks["workers"] = _check("workers", workers) if checks["broker"]["ok"] else {"ok": False}
    ok = all(c["ok"] for c in checks.values())
    body = {
        "status": "ready" if ok else "not_ready",
        "checks": checks,
        "models": {name: m.to_dict() for name, m in models.items()},
    }
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses=responses(401, 403, ok={"content": {"text/plain": {"schema": {"type": "string"}}}}),
)
def metrics(
    state: StateDep,
    authorization: Annotated[str | None, Header(description="Bearer admin key or metrics token")] = None,
) -> Response:
    """Prometheus text format; needs `Authorization: Bearer` with an admin API key or `RMSCORE_METRICS_TOKEN`."""
    from prometheus_client import CONTENT_TYPE_LATEST

    # A plain def, so the admin key's slow hash runs in a thread, not on the event loop.
    s = state.settings
    authorize_operator(state.db, state.key_cache, authorization, enabled=s.auth == "enabled", token=s.metrics_token)

    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
