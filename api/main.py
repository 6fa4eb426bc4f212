"""The FastAPI app: `create_app()` builds one from settings (`rmscore api` serves it with uvicorn)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.security import HTTPBearer
from fastapi_offline import FastAPIOffline

from api import errors
from api.auth import KeyCache
from api.config import ApiConfig, get_api_config
from api.guard import RequestGuard
from api.metrics import LatencyMiddleware, Metrics
from api.state import ApiState
from rmscore.http import CLIENT_HEADER
from rmscore.settings import Settings, get_settings

log = logging.getLogger("api")
UPLOAD_PATH = "/v1/jobs/upload"
DOCS_ASSETS = "/docs-assets"
# Outside /v1/ because trainers call these paths as their own servers serve them (api/routes/rewards.py).
TRAINER_PATHS = ("/get_reward", "/classify")  # Swagger UI's and ReDoc's scripts, styles and icon
DESCRIPTION = """Submit reward-scoring jobs, follow them, and query stored scores.

Authenticate with `Authorization: Bearer <key>` (`rmscore keys create NAME`). Every error is
`{"error": {"code", "message"}}`. Jobs, results and scores of another tenant answer 404.
"""


M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
MALLOC_ARENAS = 2


def cap_malloc_arenas() -> None:
    """At most two glibc malloc arenas in this process, unless MALLOC_ARENA_MAX says otherwise.

    glibc gives each thread that allocates its own arena (up to 8 per core) and keeps what a request
    freed there for that arena's next use: the API's thread pool turned one burst of large uploads into
    up to 40 MB more peak memory, varying from run to run (tests/hostile measured 273-318 MB with the
    default arenas, 279-280 MB with two). Set before the first request starts a thread.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return  # glibc read the variable at start-up and honours it
    with contextlib.suppress(OSError, AttributeError):  # not glibc: musl has no arenas to cap
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, MALLOC_ARENAS)


def create_app(settings: Settings | None = None, config: ApiConfig | None = None) -> FastAPI:
    from db.session import get_engine

    cap_malloc_arenas()
    settings = settings or get_settings()
    config = config or get_api_config()
    state = ApiState(settings, config, get_engine(settings.database_url), KeyCache(config.key_cache_seconds))
    state.metrics = Metrics(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio

        from db.migrate import ensure_schema

        await anyio.to_thread.run_sync(ensure_schema, state.db)
        if settings.auth == "disabled":
            log.warning("RMSCORE_AUTH=disabled: every caller is the single tenant 'local'")
        yield
        if state._aioredis is not None:
            await state._aioredis.aclose()

    # /docs and /redoc load Swagger UI and ReDoc from this package (fastapi-offline ships them), not
    # from a CDN: GPU clusters are often air-gapped, and FastAPI's default page was blank there.
    app = FastAPIOffline(
        title="rmscore",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Declared for the docs' "Authorize" button; the check itself is `api.deps.get_caller`.
        dependencies=[],
        static_url=DOCS_ASSETS,
    )
    app.state.rmscore = state
    errors.install(app)

    from api.routes import exports, health, jobs, report, rewards, score, scores

    bearer = HTTPBearer(auto_error=False, description="An API key from `rmscore keys create`")
    from fastapi import Depends

    secured = [Depends(bearer)] if settings.auth == "enabled" else []
    app.include_router(jobs.router, dependencies=secured)
    app.include_router(exports.router, dependencies=secured)
    app.include_router(scores.router, dependencies=secured)
    app.include_router(score.router, dependencies=secured)
    app.include_router(report.router, dependencies=secured)
    app.include_router(rewards.router, dependencies=secured)
    app.include_router(health.router)

    # Innermost, so CORS preflights and latency metrics still see every request it refuses.
    app.add_middleware(
        RequestGuard, state=state, streamed=(UPLOAD_PATH,), also=TRAINER_PATHS, basic=(*TRAINER_PATHS, "/v1/classify")
    )
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", CLIENT_HEADER],
        )
    if settings.auth == "disabled":
        # No credentials to check: keep web pages (DNS rebinding, cross-site forms) out. Outside
        # CORS, so a refused request never gets an Access-Control-* header.
        from api.browser import BrowserGuard

        app.add_middleware(BrowserGuard, allowed_hosts=settings.allowed_hosts, cors_origins=config.cors_origins)
    app.add_middleware(LatencyMiddleware, metrics=state.metrics)
    return app
