"""Preference data out: a job's preference pairs and best responses, streamed in TRL's formats.

The rows are `rmscore.preferences`'s, read by `db.preferences` (the CLI writes the same ones). Every
check (the caller's job, ended, one model, sane options) runs before the response starts, so each
mistake is a 4xx with its error body; then the rows stream as JSON lines or Parquet row groups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse
from fastapi.types import DecoratedCallable
from sqlalchemy import Engine

from api.deps import CallerDep, DbDep
from api.errors import responses
from db.preferences import open_export
from rmscore import preferences

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(min_length=1, max_length=64, description="The job's id.")]
_MEDIA = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}
_CONTENT = {
    "description": "JSON lines (default) or Parquet, streamed",
    "content": {
        "application/x-ndjson": {"schema": {"type": "string"}},
        "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
    },
}


@dataclass(frozen=True)
class Export:
    """What both exports take besides their own filters: whose job, in which format, whose scores."""

    db: Engine
    job_id: str
    tenant: str | None
    format: str
    model: str | None

    def stream(self, spec: preferences.Spec) -> StreamingResponse:
        export = open_export(self.db, self.job_id, spec, tenant=self.tenant)
        return StreamingResponse(
            preferences.chunks(export.rows, self.format, spec.what, export.form),
            media_type=_MEDIA[self.format],
            headers={"Content-Disposition": f'attachment; filename="{export.job.id}-{spec.what}.{self.format}"'},
        )


def _export(
    job_id: JobId,
    caller: CallerDep,
    db: DbDep,
    format: Annotated[Literal["jsonl", "parquet"], Query(description="jsonl or parquet.")] = "jsonl",
    model: Annotated[
        str | None,
        Query(max_length=256, description="Whose scores, for a job scored by several models (required there)."),
    ] = None,
) -> Export:
    return Export(db, job_id, caller.scope, format, model)


ExportDep = Annotated[Export, Depends(_export)]


def _export_route(path: str, summary: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """Both exports stream either format, and answer 409 while the job is still running."""
    return router.get(
        path, response_model=None, summary=summary, responses=responses(400, 401, 404, 409, 422, ok=_CONTENT)
    )


@_export_route(
    "/{job_id}/preferences", "Preference pairs for DPO (TRL's prompt/chosen/rejected), from the job's scores"
)
def job_preferences(
    export: ExportDep,
    pairs: Annotated[
        preferences.Pairs,
        Query(description="best-worst: one row per line; best-vs-rest: the best against each other response."),
    ] = "best-worst",
    min_margin: Annotated[float, Query(description="Only rows whose margin is at least this (>= 0).")] = 0.0,
) -> StreamingResponse:
    """One row per line (or per other response with `best-vs-rest`): `prompt`, `chosen` (the
    higher-scored response), `rejected`, their scores, `margin`, `agrees_with_label`, `custom_id`,
    `line`. Strings when every line gave strings, else TRL's conversational lists. Ties and failed
    lines make no row. 409 while the job is still running."""
    return export.stream(preferences.Spec("preferences", pairs=pairs, min_margin=min_margin, model=export.model))


@_export_route("/{job_id}/best", "The best-scored response of each line (TRL's prompt/completion): rejection sampling")
def job_best(
    export: ExportDep,
    min_score: Annotated[float | None, Query(description="Only responses scored at least this.")] = None,
) -> StreamingResponse:
    """One row per line whose best response reaches `min_score`: `prompt`, `completion`, `score`,
    `custom_id`, `line`. 409 while the job is still running."""
    return export.stream(preferences.Spec("best", min_score=min_score, model=export.model))
