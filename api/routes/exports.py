"""Preference data out: a job's preference pairs and best responses, streamed in TRL's formats.

The rows are `rmscore.preferences`'s, read by `db.preferences` (the CLI writes the same ones). Every
check (the caller's job, ended, one model, sane options) runs before the response starts, so each
mistake is a 4xx with its error body; then the rows stream as JSON lines or Parquet row groups.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from api.deps import CallerDep, DbDep
from api.errors import responses
from db.preferences import open_export
from rmscore import preferences

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(min_length=1, max_length=64, description="The job's id.")]
ExportFormat = Annotated[Literal["jsonl", "parquet"], Query(description="jsonl or parquet.")]
Model = Annotated[
    str | None, Query(max_length=256, description="Whose scores, for a job scored by several models (required there).")
]
_MEDIA = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}
_CONTENT = {
    "description": "JSON lines (default) or Parquet, streamed",
    "content": {
        "application/x-ndjson": {"schema": {"type": "string"}},
        "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
    },
}


def _stream(db: Any, job_id: str, tenant: str | None, spec: preferences.Spec, fmt: str) -> StreamingResponse:
    export = open_export(db, job_id, spec, tenant=tenant)
    return StreamingResponse(
        preferences.chunks(export.rows, fmt, spec.what, export.form),
        media_type=_MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{export.job.id}-{spec.what}.{fmt}"'},
    )


@router.get(
    "/{job_id}/preferences",
    response_model=None,
    summary="Preference pairs for DPO (TRL's prompt/chosen/rejected), from the job's scores",
    responses=responses(400, 401, 404, 409, 422, ok=_CONTENT),
)
def job_preferences(
    job_id: JobId,
    caller: CallerDep,
    db: DbDep,
    format: ExportFormat = "jsonl",
    pairs: Annotated[
        preferences.Pairs,
        Query(description="best-worst: one row per line; best-vs-rest: the best against each other response."),
    ] = "best-worst",
    min_margin: Annotated[float, Query(description="Only rows whose margin is at least this (>= 0).")] = 0.0,
    model: Model = None,
) -> StreamingResponse:
    """One row per line (or per other response with `best-vs-rest`): `prompt`, `chosen` (the
    higher-scored response), `rejected`, their scores, `margin`, `agrees_with_label`, `custom_id`,
    `line`. Strings when every line gave strings, else TRL's conversational lists. Ties and failed
    lines make no row. 409 while the job is still running."""
    spec = preferences.Spec("preferences", pairs=pairs, min_margin=min_margin, model=model)
    return _stream(db, job_id, caller.scope, spec, format)


@router.get(
    "/{job_id}/best",
    response_model=None,
    summary="The best-scored response of each line (TRL's prompt/completion): rejection sampling",
    responses=responses(400, 401, 404, 409, 422, ok=_CONTENT),
)
def job_best(
    job_id: JobId,
    caller: CallerDep,
    db: DbDep,
    format: ExportFormat = "jsonl",
    min_score: Annotated[float | None, Query(description="Only responses scored at least this.")] = None,
    model: Model = None,
) -> StreamingResponse:
    """One row per line whose best response reaches `min_score`: `prompt`, `completion`, `score`,
    `custom_id`, `line`. 409 while the job is still running."""
    spec = preferences.Spec("best", min_score=min_score, model=model)
    return _stream(db, job_id, caller.scope, spec, format)
