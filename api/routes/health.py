"""`/healthz` (the process answers), `/readyz` (database, broker, a live worker), `/metrics`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import StateDep
from api.schemas import Health, Ready
from db.session import reading
from rmscore.liveness import ModelLiveness, model_liveness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


def _check(fn: Any) -> dict[str, Any]:
    try:
        detail = fn()
    except Exception as e:  # noqa: BLE001 - a failed check is an answer, not an error
        return {"ok": False, "detail": f"{type(e).__name__}: {e}"[:300]}
    return {"ok": bool(detail), "detail": detail if isinstance(detail, str) else None}


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Ready to score: database, broker and a live worker for the default model",
    responses={503: {"model": Ready, "description": "Not ready"}},
)
def readyz(state: StateDep) -> Any:
    def database() -> str:
        with reading(state.db) as conn:
            conn.execute(text("SELECT 1"))
        return "ok"

    def broker() -> str:
        state.redis.ping()
        return "ok"

    models: dict[str, ModelLiveness] = {}

    def workers() -> str:
        # Every model jobs may name: one without a worker is accepted, then waits; say so here.
        for name in state.settings.model_names:
            models[name] = model_liveness(state.redis, name)
        default = models[state.default_model]
        if not default.live:
            raise RuntimeError(default.problem())
        missing = [m.problem() for m in models.values() if not m.live]
        return "; ".join([f"{default.live} live for {state.default_model}", *missing])  # type: ignore[list-item]

    checks = {"database": _check(database), "broker": _check(broker)}
    checks["workers"] = _check(workers) if checks["broker"]["ok"] else {"ok": False, "detail": "broker down"}
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
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(state: StateDep) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
