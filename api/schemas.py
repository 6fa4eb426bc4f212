"""Wire models (pydantic v2): what the API accepts and answers, as published in /openapi.json.

Request bodies reject unknown top-level fields (a typo in `options` should not pass silently);
unknown fields inside an item are ignored, as `rmscore score` ignores them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from rmscore.vocabulary import ControlTokens, Overflow

JobStatus = Literal["queued", "running", "completed", "failed", "cancelling", "cancelled"]
KindIn = Literal["chat", "pairwise", "listwise", "auto"]


class Error(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. job_not_found.")
    message: str


class ErrorBody(BaseModel):
    error: Error


class JobOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overflow: Overflow | None = Field(
        None, description="Over-long conversations: keep the end and flag them, or fail the line."
    )
    max_batch_tokens: int | None = Field(None, ge=16, le=1_048_576, description="Smaller batches only.")
    cache: bool | None = Field(
        None,
        description="Take scores of conversations this model (same revision, dtype, max_length) already "
        "scored in any job from the score cache [true]; false rescores every item.",
    )
    control_tokens: ControlTokens | None = Field(
        None,
        description="Control-token strings such as <|eot_id|> in content: 'card' tokenizes them as control "
        "tokens, as the model card does (a reply can forge turns); 'neutralize' keeps them plain text and "
        "flags each result it changed with neutralized=true [the server's RMSCORE_CONTROL_TOKENS, default card].",
    )


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: KindIn = Field("auto", description="chat, pairwise, or auto (from the first valid item).")
    model: str | None = Field(None, max_length=256, description="A model the server serves [default model].")
    models: list[str] | None = Field(
        None,
        min_length=1,
        max_length=8,
        description="Score every item with each of these models (each on its own workers) to compare them "
        "(GET /v1/jobs/{id}/compare); the first is the job's own model unless `model` is set.",
    )
    items: list[Any] = Field(
        min_length=1,
        description="Items in the line formats of `rmscore score`; each gets a result or an error.",
    )
    metadata: dict[str, Any] | None = None
    options: JobOptions | None = None


class RequestCounts(BaseModel):
    total: int = Field(description="Results expected: lines, times models for a job scored by several.")
    completed: int = Field(description="Results scored.")
    failed: int = Field(description="Results that ended with an error.")
    responses: int | None = Field(
        None,
        description="Listwise jobs: responses on the lines that parsed (each line counts once in the counts "
        "above, however many responses it holds); absent for other kinds.",
    )

    @model_serializer(mode="wrap")
    def _omit_responses_unless_listwise(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Other kinds' counts stay exactly {total, completed, failed}, as before listwise existed.
        out: dict[str, Any] = handler(self)
        if out.get("responses") is None:
            out.pop("responses", None)
        return out


class SubsetAccuracy(BaseModel):
    accuracy: float
    n: int


class Accuracy(BaseModel):
    overall: float = Field(
        description="Pairwise: share of pairs with chosen_score > rejected_score. Listwise: mean RewardBench 2 "
        "credit of the labelled lines (1/k when a correct response shares the top score with k-1 others)."
    )
    n: int
    subsets: dict[str, SubsetAccuracy]


class ScoreSpread(BaseModel):
    mean: float | None
    min: float | None
    max: float | None


class BestOfN(BaseModel):
    n: int = Field(description="Listwise lines scored.")
    best: ScoreSpread = Field(description="The best response's score per line.")
    worst: ScoreSpread = Field(description="The worst response's score per line.")
    margin: ScoreSpread = Field(description="Best minus worst score per line.")


class Job(BaseModel):
    id: str
    tenant: str
    kind: Literal["chat", "pairwise", "listwise"]
    model: str
    status: JobStatus
    request_counts: RequestCounts
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None
    failed_at: datetime | None = None
    metadata: dict[str, Any] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None
    error: str | None = None
    items_per_second: float | None = Field(None, description="Lines finished per second since the start.")
    accuracy: Accuracy | None = Field(None, description="Pairwise and labelled listwise jobs: per subset and overall.")
    best_of_n: BestOfN | None = Field(None, description="Listwise jobs: best and worst scores and their margin.")
    models: list[str] = Field(default_factory=list, description="Models the job is scored with, its own first.")
    by_model: dict[str, Any] | None = Field(
        None, description="Pairwise and listwise jobs scored by several models: their summary per model."
    )
    evaluation: dict[str, Any] | None = Field(
        None,
        description="Pairwise jobs: overall, per-subset table, RewardBench sections and the EvalBiasBench "
        "table where the subsets are theirs (each null otherwise). Labelled listwise jobs: overall and "
        "per-subset mean credit, and `rewardbench2` (its six domains, Ties by its own rule, and the overall).",
    )


class JobList(BaseModel):
    data: list[Job]
    next_cursor: str | None = None
    has_more: bool


class ModelPair(BaseModel):
    chosen_score: float | None = None
    rejected_score: float | None = None
    best: int | None = Field(None, description="Listwise: the response this model scored highest.")
    best_score: float | None = None
    correct: bool | float | None = None


class Disagreement(BaseModel):
    line: int
    custom_id: str | None = None
    subset: str | None = None
    scores: dict[str, ModelPair] = Field(description="Per model.")


class SubsetComparison(BaseModel):
    subset: str
    n: int
    accuracy: dict[str, float | None] = Field(description="Per model.")
    agreement: float | None


class Comparison(BaseModel):
    job_id: str
    kind: Literal["pairwise", "listwise"] = "pairwise"
    models: list[str]
    n: int = Field(description="Pairs (listwise: lines) both models scored.")
    accuracy: dict[str, float | None] = Field(description="Per model, over those pairs.")
    agreement: float | None = Field(
        description="Share of pairs where both models prefer the same side (listwise: pick the same best response)."
    )
    disagreements_total: int
    subsets: list[SubsetComparison]
    disagreements: list[Disagreement] = Field(description="One page, in line order.")
    next_cursor: int | None = Field(None, description="Pass as `after_line` for the next page.")


class LineScores(BaseModel):
    """What every scored line carries, in a job's results and in `/v1/scores` alike: its ids, then a
    score (chat) or a pair of scores (pairwise)."""

    custom_id: str | None = None
    subset: str | None = None
    score: float | None = None
    num_tokens: int | None = None
    chosen_score: float | None = None
    rejected_score: float | None = None


# The records below name LineScores first and where the line sits second: pydantic orders fields by the
# bases in reverse, so where the line sits comes first in the document and the OpenAPI schema, as before.
class _JobLine(BaseModel):
    line: int


class _StoredLine(BaseModel):
    job_id: str
    line: int
    model: str


class ResultRecord(LineScores, _JobLine):
    """One line's outcome, as `rmscore score` writes it (a score, a pair of scores, or an error), plus
    `cached` on a scored line of a stored job."""

    model_config = ConfigDict(extra="allow")

    scores: list[float] | None = Field(None, description="Listwise: every response's score, in input order.")
    best: int | None = Field(None, description="Listwise: index of the best score in `scores` (the first on a tie).")
    worst: int | None = Field(None, description="Listwise: index of the worst score in `scores`.")
    correct: bool | float | None = Field(
        None, description="Pairwise: chosen above rejected. Labelled listwise: RewardBench 2's credit in [0, 1]."
    )
    truncated: bool | None = None
    # On every scored line of a stored job's results (not in `rmscore score`'s own output).
    cached: bool | None = Field(None, description="The score came from the score cache, not the model.")
    error: Error | None = None


class ResultPage(BaseModel):
    data: list[ResultRecord]
    next_cursor: str | None = None
    has_more: bool


class StoredScore(LineScores, _StoredLine):
    margin: float | None = Field(None, description="chosen_score - rejected_score")
    correct: bool | None = None
    truncated: bool
    cached: bool = Field(False, description="The score came from the score cache, not the model.")
    neutralized: bool = Field(
        False, description="options.control_tokens=neutralize changed this item's content before scoring."
    )
    scored_at: datetime


class ScorePage(BaseModel):
    data: list[StoredScore]
    next_cursor: str | None = None
    has_more: bool


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, max_length=256)
    items: list[Any] = Field(
        min_length=1, description="Chat, pairwise or text (`{\"text\": rendered}`) items; `line` is the 1-based index."
    )
    options: JobOptions | None = None
    store: bool = Field(
        False,
        description="Also keep the answer as a completed job of yours (chat or pairwise items, one kind): "
        "`job_id` in the response; readable as any job. Text items are refused (422 text_not_stored).",
    )
    metadata: dict[str, Any] | None = Field(None, description="The stored job's metadata (with store: true only).")


class StoreError(BaseModel):
    code: str
    message: str


class ScoreResponse(BaseModel):
    model: str
    results: list[ResultRecord]
    model_identity: dict[str, Any] | None = None
    stored: bool | None = Field(None, description="With store: true: whether the answer was kept as a job.")
    job_id: str | None = Field(None, description="With store: true: the job that keeps the answer.")
    store_error: StoreError | None = Field(None, description="Why it was not kept (the scores stand).")


class Health(BaseModel):
    status: str


class Check(BaseModel):
    # Only ok / not ok: /readyz is public, so why a check failed goes to the log, not here.
    ok: bool


class ModelWorkers(BaseModel):
    live: int = Field(description="Workers of this model with a live heartbeat.")
    last_seen: float | None = Field(description="Unix time a worker of it last beat; null: never.")
    problem: str | None = Field(description="Why jobs for this model would wait; null while a worker serves it.")


class Ready(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, Check]
    models: dict[str, ModelWorkers] = Field(
        default_factory=dict,
        description="Every model jobs may name, and whether a live worker serves it (empty while the broker is down). "
        "Ready needs a worker for the default model; jobs for a model without one wait until one starts.",
    )
