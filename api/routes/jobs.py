"""Jobs: create (JSON items or a streamed file), list, read, cancel, and read results and errors."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path as PathLib
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.types import DecoratedCallable
from sqlalchemy import Engine
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect

from api import fingerprint as fingerprints
from api import submission
from api.deps import CallerDep, ConfigDep, DbDep, IdempotencyKey, SettingsDep, StateDep
from api.errors import responses
from api.schemas import Comparison, Job, JobCreate, JobList, JobStatus, KindIn, ResultPage
from api.upload import Limits, Upload, parse_file, parse_metadata, receive_multipart, receive_raw
from db.compare import compare_job
from db.jobs import CreatedJob, cancel_job, get_job, job_summary, list_jobs
from db.results import iter_results
from rmscore import cursor as cursors
from rmscore.errors import BadRequest, Overloaded, ReadTimeout, TooLarge, UnsupportedMediaType
from rmscore.export import jsonl_chunks
from rmscore.vocabulary import KIND_CHOICES, ControlTokens, Overflow

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(min_length=1, max_length=64, description="The job's id.")]
ResultFormat = Literal["jsonl", "csv", "parquet", "json"]
RAW_TYPES = (
    "application/x-ndjson",
    "application/jsonl",
    "application/json-lines",
    "application/gzip",
    "application/octet-stream",
    "application/vnd.apache.parquet",
    "text/plain",
)
# Uploads run in threads of their own, so a few big files never starve the rest of the API; each
# tenant holds at most `max_uploads_per_tenant` of them (per API process).
_upload_limiter = anyio.CapacityLimiter(16)
_uploads_in_flight: Counter[str] = Counter()
CacheQuery = Annotated[
    bool | None,
    Query(description="false: rescore every item instead of taking scores from the score cache [true]."),
]
_DRAIN_BYTES = 64 * 1024**2


def job_out(summary: dict[str, Any]) -> Job:
    return Job.model_validate(summary)


def created_response(created: CreatedJob, db: Engine, response: Response) -> Job:
    if not created.created:
        response.headers["Idempotent-Replayed"] = "true"
    return job_out(job_summary(db, created.job.id))


@router.post(
    "",
    status_code=202,
    response_model=Job,
    summary="Create a job from JSON items",
    responses=responses(400, 401, 413, 422, 429),
)
def create_job(
    body: JobCreate,
    caller: CallerDep,
    db: DbDep,
    settings: SettingsDep,
    config: ConfigDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    cache: CacheQuery = None,
) -> Job:
    """Store `items` as a job (each item a line in `rmscore score`'s formats) and queue it.

    Answers 202 with the job. A line that cannot be scored gets an error result and is counted as
    failed. A retry with the same `Idempotency-Key` and the same request returns the first job
    (header `Idempotent-Replayed: true`); the key with a different request is a 422
    `idempotency_key_reused`.
    """
    fingerprint = fingerprints.json_request("jobs", body.model_dump(mode="json"), {"cache": cache})
    earlier = submission.earlier_job(db, caller.tenant, idempotency_key, fingerprint)
    if earlier is not None:
        return created_response(earlier, db, response)
    submission.check_count(len(body.items), settings)
    request = submission.prepare(
        settings,
        config,
        kind=body.kind,
        model=body.model,
        models=body.models,
        metadata=body.metadata,
        options=_with_cache(body.options.model_dump(exclude_none=True) if body.options else None, cache),
        tenant=caller.tenant,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
    )
    submission.check_backlog(db, config, caller.tenant, len(body.items))
    created = submission.store(db, settings, submission.parse_items(body.items, body.kind, settings), request)
    return created_response(created, db, response)


def _with_cache(options: dict[str, Any] | None, cache: bool | None) -> dict[str, Any] | None:
    """`?cache=` overrides `options.cache`."""
    if cache is None:
        return options
    return {**(options or {}), "cache": cache}


def _form_bool(value: str | None, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name} must be true or false", code="invalid_options")


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "JSONL, .jsonl.gz, .parquet"},
                        "kind": {"type": "string", "enum": list(KIND_CHOICES)},
                        "model": {"type": "string"},
                        "metadata": {"type": "string", "description": "A JSON object"},
                        "overflow": {"type": "string", "enum": ["truncate", "error"]},
                        "cache": {"type": "string", "enum": ["true", "false"]},
                        "models": {"type": "string", "description": "Comma-separated, to compare them"},
                    },
                },
                "encoding": {"file": {"contentType": "application/octet-stream"}},
            },
            "application/x-ndjson": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/upload",
    status_code=202,
    response_model=Job,
    summary="Create a job from a file, streamed",
    responses=responses(400, 401, 413, 415, 422, 429),
    openapi_extra=_UPLOAD_BODY,
)
async def upload_job(
    request: Request,
    caller: CallerDep,
    state: StateDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    kind: Annotated[KindIn | None, Query(description="Or as a form field, before or after the file.")] = None,
    model: Annotated[str | None, Query(max_length=256)] = None,
    models: Annotated[
        str | None, Query(max_length=1024, description="Comma-separated: score with each, to compare them.")
    ] = None,
    metadata: Annotated[str | None, Query(max_length=2048, description="A JSON object (bigger: a form field).")] = None,
    overflow: Annotated[Overflow | None, Query()] = None,
    cache: CacheQuery = None,
    control_tokens: Annotated[
        ControlTokens | None, Query(description="As options.control_tokens (or a form field).")
    ] = None,
    filename: Annotated[
        str | None, Query(max_length=512, description="Names the file of a non-multipart body (.gz, .parquet).")
    ] = None,
) -> Job:
    """Upload a JSONL file (or .jsonl.gz, .parquet, one .json document) as the multipart field
    `file` (form fields before or after it), or as the whole body with `Content-Type:
    application/x-ndjson`. The body goes to a temporary file, is checked against the size limits
    (compressed, expanded, per line), then stored line by line; memory stays flat on any file."""
    settings, config, db = state.settings, state.config, state.db
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    boundary: bytes | None = None
    if media == "multipart/form-data":
        for param in ctype.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "boundary" and value:
                boundary = value.strip('"').encode("latin-1", "replace")
        if not boundary:
            raise BadRequest("multipart body without a boundary", code="invalid_multipart")
    elif media not in RAW_TYPES:
        raise UnsupportedMediaType(
            "send multipart/form-data with a 'file' field, or the file itself as application/x-ndjson"
        )
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.max_upload_bytes:
        raise TooLarge(f"the upload is over the {settings.max_upload_bytes:,}-byte limit", code="upload_too_large")

    stream = request.stream()
    timeout = settings.upload_read_timeout
    # The body streams through the request's fingerprint on its way to disk (Idempotency-Key).
    params: dict[str, Any] = {"kind": kind, "model": model, "models": models, "metadata": metadata}
    params.update(overflow=overflow)
    params.update(cache=cache, control_tokens=control_tokens, filename=filename)
    fingerprint = fingerprints.UploadFingerprint(params, media, boundary)

    async def next_chunk() -> bytes | None:
        try:
            with anyio.fail_after(timeout):
                chunk = await stream.__anext__()
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise ReadTimeout(f"no byte of the upload came for {timeout:g} seconds", code="read_timeout") from None
        fingerprint.update(chunk)
        return chunk

    def read_chunk() -> bytes | None:
        return anyio.from_thread.run(next_chunk)

    # A used key is a retry or a reuse: only the whole body tells which, so the backlog is not checked.
    replay = await anyio.to_thread.run_sync(submission.used_key, db, caller.tenant, idempotency_key)
    if not replay:
        await anyio.to_thread.run_sync(submission.check_backlog, db, config, caller.tenant)

    def work() -> CreatedJob:
        upload = Upload(filename=filename)
        limits = Limits(
            max_bytes=settings.max_upload_bytes,
            max_job_bytes=settings.max_job_bytes,
            max_json_bytes=config.max_json_body_bytes,
            **settings.line_limits,
        )
        with tempfile.TemporaryDirectory(prefix="rmscore-upload-") as tmp:
            path = PathLib(tmp) / "upload"
            if boundary is not None:
                receive_multipart(read_chunk, boundary, upload, path, limits.max_bytes)
            else:
                receive_raw(read_chunk, path, limits.max_bytes)
            _read_rest_sync(read_chunk, fingerprint, limits.max_bytes)  # a multipart epilogue, if any
            if replay:
                earlier = submission.earlier_job(db, caller.tenant, idempotency_key, fingerprint.hexdigest())
                if earlier is not None:
                    return earlier
            f = upload.fields
            k = kind or f.get("kind") or "auto"
            meta_raw = metadata if metadata is not None else f.get("metadata")
            ovf = overflow or f.get("overflow")
            ctl = control_tokens or f.get("control_tokens")
            given = {**({"overflow": ovf} if ovf else {}), **({"control_tokens": ctl} if ctl else {})}
            wanted = models or f.get("models") or ""
            request = submission.prepare(
                settings,
                config,
                kind=k,
                model=model or f.get("model") or None,
                models=[x.strip() for x in wanted.split(",") if x.strip()],
                metadata=parse_metadata(meta_raw),
                options=_with_cache(given or None, _form_bool(f.get("cache"), "cache") if cache is None else cache),
                tenant=caller.tenant,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint.hexdigest(),
            )
            lines = parse_file(path, upload.filename, k, limits)
            return submission.store(db, settings, submission.within_backlog(lines, db, config, caller.tenant), request)

    # One tenant may hold only a few upload slots: its stalled or slow uploads cannot starve the others.
    if _uploads_in_flight[caller.tenant] >= settings.max_uploads_per_tenant:
        raise Overloaded(
            f"you have {settings.max_uploads_per_tenant} uploads in progress (RMSCORE_MAX_UPLOADS_PER_TENANT); "
            "retry when one ends",
            retry_after=5,
        )
    _uploads_in_flight[caller.tenant] += 1
    try:
        created = await anyio.to_thread.run_sync(work, limiter=_upload_limiter)
    except ClientDisconnect:
        raise BadRequest("the client went away during the upload", code="upload_incomplete") from None
    except ReadTimeout:
        raise
    except Exception:
        # Read (and drop) what the client is still sending, so it gets the error instead of a reset
        # connection; past a bound, closing is cheaper than reading.
        await _drain(next_chunk, _DRAIN_BYTES)
        raise
    finally:
        _uploads_in_flight[caller.tenant] -= 1
        if not _uploads_in_flight[caller.tenant]:
            del _uploads_in_flight[caller.tenant]
    return await anyio.to_thread.run_sync(created_response, created, db, response)


def _over_limit(limit: int) -> TooLarge:
    return TooLarge(f"the upload is over the {limit:,}-byte limit", code="upload_too_large")


def _read_rest_sync(
    read_chunk: Callable[[], bytes | None], fingerprint: fingerprints.UploadFingerprint, limit: int
) -> None:
    """Read what the multipart parser left after the closing boundary (an epilogue), from the upload's
    worker thread, so the fingerprint covers every byte; TooLarge past `limit`."""
    while read_chunk() is not None:
        if fingerprint.seen > limit:
            raise _over_limit(limit)


async def _drain(next_chunk: Callable[[], Awaitable[bytes | None]], limit: int) -> None:
    seen = 0
    try:
        while seen < limit and (chunk := await next_chunk()) is not None:
            seen += len(chunk)
    except Exception:  # noqa: BLE001 - the stream is already broken or consumed: nothing to drain
        pass


@router.get("", response_model=JobList, summary="List your jobs, newest first", responses=responses(400, 401, 422))
def list_my_jobs(
    caller: CallerDep,
    db: DbDep,
    status: Annotated[JobStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> JobList:
    page, next_cursor = list_jobs(db, tenant=caller.scope, status=status, limit=limit, cursor=cursor)
    return JobList(
        data=[job_out({**j.to_dict(), "accuracy": None}) for j in page],
        next_cursor=next_cursor,
        has_more=next_cursor is not None,
    )


@router.get(
    "/{job_id}", response_model=Job, summary="A job, its counts and accuracy", responses=responses(401, 404, 422)
)
def read_job(job_id: JobId, caller: CallerDep, db: DbDep) -> Job:
    return job_out(job_summary(db, job_id, tenant=caller.scope))


@router.post(
    "/{job_id}/cancel",
    response_model=Job,
    summary="Cancel a job (results already scored are kept)",
    responses=responses(401, 404, 409, 422),
)
def cancel(job_id: JobId, caller: CallerDep, db: DbDep) -> Job:
    job = cancel_job(db, job_id, tenant=caller.scope)
    return job_out(job_summary(db, job.id))


_RESULT_CONTENT = {
    "model": ResultPage,
    "description": "JSONL (default), CSV, Parquet, or with format=json one page of records",
    "content": {
        "application/x-ndjson": {"schema": {"type": "string"}},
        "text/csv": {"schema": {"type": "string"}},
        "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
    },
}


# A job's results (and errors) page in line order for one model, which the request names: the line
# is the whole sort key.
_LINE_CURSOR = "line"


def _encode_line_cursor(line: int) -> str:
    return cursors.encode(_LINE_CURSOR, line)


def _decode_line_cursor(cursor: str | None) -> int:
    if cursor is None or cursor == "":
        return 0
    (line,) = cursors.decode(cursor, _LINE_CURSOR, ("int",))
    return int(line)


def _csv(records: Iterator[dict[str, Any]], kind: str) -> Iterator[bytes]:
    from rmscore.export import csv_chunks

    for piece in csv_chunks(records, kind):
        yield piece.encode()


@dataclass(frozen=True)
class ResultQuery:
    """The query parameters `/results` and `/errors` share (one page or stream of a job's records)."""

    format: ResultFormat
    cursor: str | None
    limit: int
    model: str | None


def _result_query(
    format: Annotated[ResultFormat, Query(description="jsonl, csv, parquet, or json (one page).")] = "jsonl",
    cursor: Annotated[str | None, Query(max_length=512, description="Resume after this (all formats).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size of format=json.")] = 100,
    model: Annotated[
        str | None, Query(max_length=256, description="Whose records, for a job scored by several models.")
    ] = None,
) -> ResultQuery:
    return ResultQuery(format, cursor, limit, model)


ResultQueryDep = Annotated[ResultQuery, Depends(_result_query)]


def _results(db: Engine, job_id: str, tenant: str | None, query: ResultQuery, *, errors_only: bool) -> Any:
    job = get_job(db, job_id, tenant=tenant)
    fmt, cursor, limit, model = query.format, query.cursor, query.limit, query.model
    after = _decode_line_cursor(cursor)
    name = f"{job.id}-{'errors' if errors_only else 'results'}"
    if fmt == "json":
        recs = list(
            iter_results(
                db, job.id, tenant=tenant, after_line=after, limit=limit + 1, errors_only=errors_only, model=model
            )
        )
        more = len(recs) > limit
        recs = recs[:limit]
        # Raw records, exactly as `rmscore score` writes them (no null-filled fields of other shapes).
        return JSONResponse(
            {
                "data": recs,
                "next_cursor": _encode_line_cursor(recs[-1]["line"]) if more else None,
                "has_more": more,
            }
        )
    records = iter_results(db, job.id, tenant=tenant, after_line=after, errors_only=errors_only, model=model)
    if fmt == "jsonl":
        return StreamingResponse(
            jsonl_chunks(records),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{name}.jsonl"'},
        )
    if fmt == "csv":
        return StreamingResponse(
            _csv(records, job.kind),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    from rmscore.parquet import write_results

    fd, path = tempfile.mkstemp(prefix="rmscore-results-", suffix=".parquet")
    os.close(fd)
    try:
        write_results(records, path, job.kind)
    except BaseException:
        os.unlink(path)
        raise
    return FileResponse(
        path,
        media_type="application/vnd.apache.parquet",
        filename=f"{name}.parquet",
        background=BackgroundTask(os.unlink, path),
    )


def _result_route(path: str, summary: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """`/results` and `/errors` answer the same query the same way; only which lines differs."""
    return router.get(
        path, response_model=None, summary=summary, responses=responses(400, 401, 404, 422, ok=_RESULT_CONTENT)
    )


@_result_route("/{job_id}/results", "A job's results in input order")
def job_results(job_id: JobId, caller: CallerDep, db: DbDep, query: ResultQueryDep) -> Any:
    """One record per line that has an outcome, as `rmscore score` writes it. While the job runs,
    lines not yet scored are left out (page the JSON form once the job has ended to see each line
    exactly once); after it ends every line is there, those never scored as errors."""
    return _results(db, job_id, caller.scope, query, errors_only=False)


@_result_route("/{job_id}/errors", "Only the lines that failed")
def job_errors(job_id: JobId, caller: CallerDep, db: DbDep, query: ResultQueryDep) -> Any:
    return _results(db, job_id, caller.scope, query, errors_only=True)


@router.get(
    "/{job_id}/compare",
    response_model=Comparison,
    summary="Two models on the job's pairs: accuracy side by side, agreement, disagreements",
    responses=responses(400, 401, 404, 422),
)
def compare(
    job_id: JobId,
    caller: CallerDep,
    db: DbDep,
    models: Annotated[
        str | None, Query(max_length=600, description="Two of the job's models, comma-separated [its first two].")
    ] = None,
    after_line: Annotated[int, Query(ge=0, le=2**31 - 1, description="Disagreements after this line.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Disagreements per page.")] = 100,
) -> Comparison:
    """For a pairwise job scored by several models (`models` at submission): per subset, each model's
    accuracy and how often they agree (both prefer the same side), then the pairs they disagree on."""
    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    return Comparison.model_validate(
        compare_job(db, job_id, tenant=caller.scope, models=names, after_line=after_line, limit=limit)
    )
