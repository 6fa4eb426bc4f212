"""One place that turns every failure into `{"error": {"code", "message"}}` with the right status.

`rmscore.errors` classes carry their status; request validation is 422 `invalid_request`;
Starlette's own HTTP errors (unknown route, wrong method) keep their status; anything else is a
500 whose message says nothing about internals (the traceback goes to the log).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rmscore.errors import Overloaded, RmscoreError, ScoringFailed, Timeout, Unavailable

log = logging.getLogger("api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "overloaded",
    503: "unavailable",
    504: "timeout",
}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def validation_message(errors: list[dict[str, Any]], limit: int = 5) -> str:
    """The first few problems as `where: what`, never echoing the (possibly huge) input."""
    msgs = [f"{_where(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in errors[:limit]]
    more = len(errors) - limit
    text = "; ".join(msgs) + (f"; and {more} more" if more > 0 else "")
    return text[:2000]


async def _rmscore_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RmscoreError)
    status = exc.http_status
    headers: dict[str, str] = {}
    if isinstance(exc, Overloaded | Unavailable):
        headers["Retry-After"] = str(exc.retry_after)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status >= 500 and not isinstance(exc, Timeout | Unavailable | ScoringFailed):
        log.error("%s: %s", exc.code, exc.message)
        return error_response(status, exc.code, "the server is misconfigured; see its log")
    return error_response(status, exc.code, exc.message, headers or None)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "invalid_request", validation_message(list(exc.errors())))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if getattr(request.state, "body_too_large", False):
        return error_response(413, "body_too_large", str(request.state.body_too_large))
    status = exc.status_code
    code = _HTTP_CODES.get(status, "error" if status >= 500 else "bad_request")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(status, code, message, dict(exc.headers) if exc.headers else None)


async def _backend_down(request: Request, exc: Exception) -> JSONResponse:
    # The database or broker is restarting or unreachable: a retry will do, so 503, not 500.
    what = "database" if type(exc).__module__.startswith("sqlalchemy") else "broker"
    log.warning("%s unavailable on %s %s: %s", what, request.method, request.url.path, type(exc).__name__)
    return error_response(503, f"{what}_unavailable", f"the {what} is unavailable; retry shortly", {"Retry-After": "5"})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if getattr(request.state, "body_too_large", False):
        return error_response(413, "body_too_large", str(request.state.body_too_large))
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error; the server log has the details")


async def respond(request: Request, exc: Exception) -> JSONResponse:
    """The error response for `exc`, for code that runs outside FastAPI's handlers (ASGI middleware)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import OperationalError

    if isinstance(exc, RmscoreError):
        return await _rmscore_error(request, exc)
    if isinstance(exc, OperationalError | RedisConnectionError | RedisTimeoutError):
        return await _backend_down(request, exc)
    return await _unexpected(request, exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RmscoreError, _rmscore_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import OperationalError

    for exc_type in (OperationalError, RedisConnectionError, RedisTimeoutError):
        app.add_exception_handler(exc_type, _backend_down)
    app.add_exception_handler(Exception, _unexpected)


def responses(*statuses: int, ok: dict[str, Any] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route: its error statuses, and `ok` for its 200 when it is not JSON."""
    from api.schemas import ErrorBody

    descriptions = {
        400: "Bad request (unknown model, invalid cursor, bad options)",
        401: "Missing or wrong API key",
        403: "A tenant key on an operator endpoint (needs an admin key)",
        404: "No such job (or not yours)",
        408: "The request body stopped arriving (RMSCORE_UPLOAD_READ_TIMEOUT)",
        409: "Conflict with the job's state",
        413: "Too large (body, upload, or item count)",
        415: "Unsupported content type",
        422: "Request does not match the schema, or an Idempotency-Key reused for another request",
        429: "Too much queued work; retry after Retry-After seconds",
        502: "The worker failed to score the items",
        503: "No worker or broker available",
        504: "Not scored in time",
    }
    # The content type is spelled out: on a route whose success is HTML, FastAPI would otherwise
    # document its JSON errors as text/html too.
    schema = {"$ref": "#/components/schemas/ErrorBody"}
    content = {"application/json": {"schema": schema}}
    out: dict[int | str, dict[str, Any]] = {} if ok is None else {200: ok}
    for s in statuses:
        out[s] = {"model": ErrorBody, "description": descriptions[s], "content": content}
    return out
