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

    # Read-only members: a frozen dataclass (JobInfo) satisfies them.
    @property
    def id(self) -> str: ...

    @property
    def tenant(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def total(self) -> int: ...

    @property
    def completed(self) -> int: ...

    @property
    def failed(self) -> int: ...

    @property
    def created_at(self) -> datetime: ...

    @property
    def started_at(self) -> datetime | None: ...

    @property
    def completed_at(self) -> datetime | None: ...

    @property
    def cancelled_at(self) -> datetime | None: ...

    @property
    def failed_at(self) -> datetime | None: ...

    @property
    def metadata(self) -> dict[str, Any] | None: ...

    @property
    def options(self) -> dict[str, Any]: ...

    @property
    def idempotency_key(self) -> str | None: ...

    @property
    def error(self) -> str | None: ...

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
    # Pairwise: the two sides. Listwise: chosen = the best response, rejected = the worst.
    chosen_score: float | None = None
    rejected_score: float | None = None
    prompt: list[dict[str, str]] = field(default_factory=list)  # shared turns before the reply
    chosen: list[dict[str, str]] = field(default_factory=list)  # chat: the reply turns
    rejected: list[dict[str, str]] = field(default_factory=list)
    best: int | None = None  # listwise: which responses `chosen` and `rejected` are (indices as given)
    worst: int | None = None

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
    evaluations: dict[str, dict[str, Any] | None]  # model -> `rmscore.evaluation.evaluate` (/ evaluate_listwise)
    histograms: list[Histogram]
    examples: dict[str, list[Example]]  # chat: "highest", "lowest"; pairwise: "right", "wrong", "lowest";
    # listwise: "widest", "closest" (best - worst margin)
    throughput: dict[str, Any] | None
    generated_at: datetime
    # Listwise: per model, `db.listwise.best_of_n_spread` (best and worst scores, their margin).
    best_of_n: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    @property
    def pairwise(self) -> bool:
        return self.job.kind == "pairwise"

    @property
    def listwise(self) -> bool:
        return self.job.kind == "listwise"

    @property
    def card_model(self) -> bool:
        """Whether the job's model is the one whose model card gives the EvalBiasBench figures."""
        return self.job.model == model_name(EVALBIASBENCH_REFERENCE_MODEL)
