"""A scored job's lines for the preference exports (`rmscore.preferences`), read in keyset pages.

`open_export` checks everything a request can get wrong before a byte is sent (the job is the
caller's, has ended, has responses to compare, the model and options make sense); the rows come
after, lazily, `PAGE` lines per short read transaction, so no cursor stays open while the caller
writes a file or an HTTP response, and memory holds one page whatever the job's size. Lines that
failed (to parse or to score) have no scores and make no row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, false, func, or_, select

from db.jobs import JobInfo, get_job, job_models
from db.models import items, results
from db.session import reading
from rmscore import preferences
from rmscore.errors import BadRequest, Conflict
from rmscore.formats import text_chars

# Lines per read. Each carries its conversations (up to RMSCORE_MAX_LINE_BYTES each), so fewer
# than the results pages' 1000 ...
PAGE = 200
# ... and fewer still when lines are long: 200 lines of 1 MB were 200 MB decoded at once. A read
# starts at FIRST_PAGE lines, and each next one takes as many lines as fit PAGE_CHARS at the sizes
# seen so far (at most PAGE).
FIRST_PAGE = 8
PAGE_CHARS = 4 * 1024**2


@dataclass(frozen=True)
class Export:
    job: JobInfo
    model: str
    form: preferences.Form
    rows: Iterator[dict[str, Any]]


def open_export(db: Engine, job_id: str, spec: preferences.Spec, *, tenant: str | None = None) -> Export:
    """The job's export under `spec`; NotFound (another tenant's job too), BadRequest or Conflict
    before any row is read."""
    job = get_job(db, job_id, tenant=tenant)
    if job.kind == "chat":
        does = "nothing to pair" if spec.what == "preferences" else "no best one to pick"
        raise BadRequest(
            f"job {job.id} is a chat job: each line has one response, so there is {does}; "
            "submit the responses to compare as one line: listwise (prompt + responses) or pairwise (chosen/rejected)",
            code="nothing_to_compare",
        )
    if not job.terminal:
        raise Conflict(
            f"job {job.id} is {job.status}: export its {spec.what} once it has ended "
            "(rows of a running job would miss the lines still being scored)",
            code="job_not_finished",
        )
    model = pick_model(job_models(db, job), spec.model)
    form = _form(db, job)
    return Export(job, model, form, preferences.rows(_groups(db, job, model), form, spec))


def pick_model(models: list[str], wanted: str | None) -> str:
    """`wanted`, when the job is scored by it; the only model; else BadRequest listing the models:
    preferences mix no models, and no default would say which one a file holds."""
    if wanted is None:
        if len(models) == 1:
            return models[0]
        raise BadRequest(
            f"the job is scored by several models ({', '.join(models)}): pick one with --model (?model=)",
            code="model_required",
        )
    if wanted not in models:
        raise BadRequest(f"the job is not scored by {wanted}; its models: {', '.join(models)}", code="unknown_model")
    return wanted


def _form(db: Engine, job: JobInfo) -> preferences.Form:
    """"text" when every stored line of the job gave its prompt and replies as strings, else "messages"."""
    text = items.c.payload["text"].as_boolean()
    stored = and_(items.c.job_id == job.id, items.c.payload.is_not(None))
    with reading(db) as conn:
        any_line = conn.execute(select(items.c.line).where(stored).limit(1)).first()
        not_text = conn.execute(select(items.c.line).where(stored, or_(text.is_(None), text == false())).limit(1))
        return "text" if any_line is not None and not_text.first() is None else "messages"


def _groups(db: Engine, job: JobInfo, model: str) -> Iterator[preferences.Group]:
    after, limit = 0, FIRST_PAGE
    scored = and_(results.c.job_id == items.c.job_id, results.c.line == items.c.line, results.c.model == model)
    while True:
        q = (
            select(
                items.c.line,
                items.c.custom_id,
                items.c.payload,
                results.c.chosen_score,
                results.c.rejected_score,
                results.c.scores,
            )
            .select_from(items.join(results, scored))
            .where(
                items.c.job_id == job.id,
                items.c.line > after,
                items.c.payload.is_not(None),
                results.c.error_code.is_(None),
            )
            .order_by(items.c.line)
            .limit(limit)
        )
        with reading(db) as conn:
            page = conn.execute(q).all()
        if not page:
            return
        for row in page:
            if job.kind == "listwise":
                yield preferences.listwise_group(row.line, row.custom_id, row.payload, row.scores)
            else:
                yield preferences.pair_group(row.line, row.custom_id, row.payload, row.chosen_score, row.rejected_score)
        after = page[-1].line
        widest = max(text_chars(row.payload) for row in page)
        limit = max(1, min(PAGE, PAGE_CHARS // max(widest, 1)))


def scored_lines(db: Engine, job: JobInfo, model: str) -> int:
    """Lines of the job with scores from `model` (what an export reads)."""
    q = select(func.count()).where(
        results.c.job_id == job.id, results.c.model == model, results.c.error_code.is_(None)
    )
    with reading(db) as conn:
        return int(conn.execute(q).scalar_one())
