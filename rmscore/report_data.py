"""What the job report shows, as plain data: filled by the job store (`db.report.collect`), drawn by
`rmscore.report.render`.

It lives in the shared core, apart from both, so the rendering never imports the database layer
and the queries never reach into the HTML: `db/` may import the core, the core never imports `db/`.
The job is described by `JobFacts`, the fields the page reads (`db.jobs.JobInfo` has them all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from rmscore.evaluation import EVALBIASBENCH_REFERENCE_MODEL
from rmscore.settings import model_name


class JobFacts(Protocol):
    """The facts of a job the report prints (structurally `db.jobs.JobInfo`)."""

    id: str
    tenant: str
    kind: str
    model: str
    status: str
    total: int
    completed: int
    failed: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    failed_at: datetime | None
    metadata: dict[str, Any] | None
    options: dict[str, Any]
    idempotency_key: str | None
    error: str | None

    @property
    def done(self) -> int: ...

    @property
    def terminal(self) -> bool: ...


@dataclass
class Histogram:
    subset: str
    edges: list[float]
    counts: list[list[int]]  # one series per model, in `ReportData.models` order
    n: int = 0
    svg: str = ""


@dataclass
class Example:
    """One item in the report's example tables, with its conversation split for display."""

    line: int
    custom_id: str | None
    subset: str | None
    score: float | None = None  # chat
    chosen_score: float | None = None
    rejected_score: float | None = None
    prompt: list[dict[str, str]] = field(default_factory=list)  # shared turns before the reply
    chosen: list[dict[str, str]] = field(default_factory=list)  # chat: the reply turns
    rejected: list[dict[str, str]] = field(default_factory=list)

    @property
    def margin(self) -> float | None:
        if self.chosen_score is None or self.rejected_score is None:
            return None
        return self.chosen_score - self.rejected_score


@dataclass
class ReportData:
    job: JobFacts
    models: list[str]
    lines: int  # input lines (each scored once per model)
    chunks: dict[str, int]
    errors: list[tuple[str, int]]  # error code -> lines of the job's model, as its results report them
    unscored: int  # lines × models without an outcome: pending while the job runs, then cancelled/not scored
    # What those lines are: "pending" while the job runs; once it ended, what its results call them
    # ("cancelled", "not scored": `db.results.NOT_SCORED`), set by the store that knows those codes.
    unscored_label: str
    evaluations: dict[str, dict[str, Any] | None]  # model -> `rmscore.evaluation.evaluate`
    histograms: list[Histogram]
    examples: dict[str, list[Example]]  # chat: "highest", "lowest"; pairwise: "right", "wrong", "lowest"
    throughput: dict[str, Any] | None
    generated_at: datetime

    @property
    def pairwise(self) -> bool:
        return self.job.kind == "pairwise"

    @property
    def card_model(self) -> bool:
        """Whether the job's model is the one whose model card gives the EvalBiasBench figures."""
        return self.job.model == model_name(EVALBIASBENCH_REFERENCE_MODEL)
