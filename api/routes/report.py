"""`GET /v1/jobs/{job_id}/report`: the job's HTML report (tables, charts, examples), as `rmscore report` writes it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse

from api.deps import CallerDep, DbDep
from api.errors import responses

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(min_length=1, max_length=64, description="The job's id.")]


@router.get(
    "/{job_id}/report",
    response_class=HTMLResponse,
    summary="A job's report as one self-contained HTML page",
    responses=responses(401, 404, 422, ok={"content": {"text/html": {}}, "description": "The report"}),
)
def job_report(job_id: JobId, caller: CallerDep, db: DbDep) -> HTMLResponse:
    """Job facts, progress, accuracy tables (RewardBench sections and the EvalBiasBench table when
    they apply), score or margin histograms per subset, the highest- and lowest-scored items and the
    most confidently wrong pairs with their text, and throughput over time. The page has no script
    and loads nothing: it can be saved and opened offline.

    A plain def: the database reads and the drawing run in FastAPI's thread pool.
    """
    from db.report import build_report
    from rmscore.report import CSP

    html = build_report(db, job_id, tenant=caller.scope)
    # The page's own CSP is repeated as a header: conversations in it are untrusted text.
    return HTMLResponse(
        html,
        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
    )
