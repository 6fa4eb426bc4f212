"""Jobs: store one from a stream of parsed lines, read, list, cancel, and move it to its end state.

`create_job` streams: items go in batches of `BATCH` rows, each batch its own short transaction
(so SQLite writers elsewhere are never shut out for long), and only chunk boundaries (a few
integers per `chunk_size` items) stay in memory. The job row, its chunks and counts are written
last, in one transaction: until then the job does not exist for anyone, so a crashed or
rejected upload never shows up half-stored.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, and_, delete, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from db.listwise import best_of_n_spread, listwise_evaluation
from db.models import chunks, items, jobs, results
from db.results import BATCH, insert_missing_results, job_accuracy, result_row
from db.session import reading, retrying, utcnow, writing
from rmscore import cursor as cursors
from rmscore.errors import BadRequest, Conflict, IdempotencyMismatch, NotFound, TooLarge
from rmscore.evaluation import evaluate_accuracy
from rmscore.formats import Item, Kind, LineError, Parsed, content_hash, error_record, text_chars
from rmscore.vocabulary import (
    CHUNK_OPEN,
    CONTROL_TOKEN_MODES,
    JOB_ACTIVE,
    KIND_CHOICES,
    OVERFLOW_MODES,
    JobProgress,
    choices,
)

if TYPE_CHECKING:
    from rmscore.settings import Settings

DEFAULT_TENANT = "local"
# What identifies a submission for idempotency: a digest, or a function that gives it once the input
# has been read (an upload's digest covers bytes still streaming in when the job is stored).
Fingerprint = str | Callable[[], str] | None


@dataclass(frozen=True)
class JobInfo(JobProgress):
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
    responses: int | None = None  # listwise jobs: responses on the lines that parsed (migration 0007)

    @classmethod
    def from_row(cls, row: Any) -> JobInfo:
        m = dict(row._mapping)
        m["metadata"] = m.pop("metadata", None)
        return cls(**{k: m[k] for k in cls.__dataclass_fields__ if k in m})

    def items_per_second(self, now: datetime | None = None) -> float | None:
        """Lines finished per second since the first chunk started (bad input lines not counted)."""
        if self.started_at is None:
            return None
        end = self.completed_at or self.cancelled_at or self.failed_at or now or utcnow()
        seconds = (end - self.started_at).total_seconds()
        return None if seconds <= 0 else self.done / seconds

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO 8601 UTC, counts grouped as in the OpenAI Batch API."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = v.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
        d["request_counts"] = {
            "total": d.pop("total"),
            "completed": d.pop("completed"),
            "failed": d.pop("failed"),
        }
        # Counts are of lines (a listwise line is one request however many responses it holds); a
        # listwise job adds how many responses its lines that parsed hold, once (not per model).
        responses = d.pop("responses")
        if self.kind == "listwise":
            d["request_counts"]["responses"] = responses or 0
        d["items_per_second"] = self.items_per_second()
        return d


@dataclass(frozen=True)
class CreatedJob:
    job: JobInfo
    created: bool  # False when an earlier submission with the same idempotency key was returned


@dataclass(frozen=True)
class JobRequest:
    """What a producer asks to store as a job, checked and with its models resolved to short names.

    Each producer (the API's routes, `db.producer.submit`) builds one and hands it whole to
    `db.producer.store_and_enqueue`: what a job request holds is listed here once, not again in
    every signature on the way down. Lines travel beside it, as a stream.
    """

    model: str
    kind: str = "auto"
    tenant: str = DEFAULT_TENANT
    chunk_size: int | None = None  # None: the server's `Settings.chunk_size`
    metadata: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    idempotency_key: str | None = None
    models: Sequence[str] | None = None  # more models to compare `model` with (see `create_job`)
    fingerprint: Fingerprint = None  # the request's, for `Idempotency-Key` replays (see `replay`)


def resolve_model(name: str | None, settings: Settings | None = None) -> str:
    """The short model name a job is scored with; only models the operator configured are accepted."""
    if settings is None:
        from rmscore.settings import get_settings

        settings = get_settings()
    from rmscore.settings import model_name

    names: dict[str, str] = settings.model_names
    if name is None:
        return model_name(settings.model)
    if name in names:
        return name
    by_id = {v: k for k, v in names.items()}
    if name in by_id:
        return by_id[name]
    raise BadRequest(
        f"model {name!r} is not served here; choose one of: {', '.join(sorted(names))}", code="unknown_model"
    )


def check_kind(kind: str) -> None:
    if kind not in KIND_CHOICES:
        raise BadRequest(f"kind must be {choices(KIND_CHOICES)}", code="invalid_kind")


def check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(options or {})
    unknown = set(out) - {"overflow", "max_batch_tokens", "cache", "control_tokens"}
    if unknown:
        raise BadRequest(f"unknown job options: {', '.join(sorted(unknown))}", code="invalid_options")
    if out.get("overflow") not in (None, *OVERFLOW_MODES):
        raise BadRequest("options.overflow must be 'truncate' or 'error'", code="invalid_options")
    mbt = out.get("max_batch_tokens")
    if mbt is not None and (isinstance(mbt, bool) or not isinstance(mbt, int) or mbt < 16):
        raise BadRequest("options.max_batch_tokens must be an integer >= 16", code="invalid_options")
    if out.get("cache") not in (None, True, False):
        raise BadRequest("options.cache must be true or false", code="invalid_options")
    if out.get("control_tokens") not in (None, *CONTROL_TOKEN_MODES):
        raise BadRequest("options.control_tokens must be 'card' or 'neutralize'", code="invalid_options")
    return out


# Text per batch of items, besides BATCH rows: lines may hold up to RMSCORE_MAX_LINE_BYTES (1 MB)
# each, and 1000 of them (a 4 MB .jsonl.gz) held at once, then serialized for the insert, took
# the API past a GB. 4 M characters keeps a batch's payloads and their JSON within ~15 MB.
BATCH_CHARS = 4 * 1024**2


def estimate_tokens(item: Item) -> int:
    """Rough token count (4 characters a token, a few per turn for the template): sizes chunks."""
    return sum(
        len(conv) // 4 if isinstance(conv, str) else sum(len(m["content"]) // 4 + 5 for m in conv)
        for conv in item.conversations
    )


class _ChunkPlanner:
    """Cuts items into chunks of at most `size` items and `max_tokens` estimated tokens."""

    def __init__(self, size: int, max_tokens: int) -> None:
        self.size, self.max_tokens = size, max_tokens
        self.plans: list[tuple[int, int, int]] = []  # (first_line, last_line, n_items)
        self._first = self._last = self._n = self._tokens = 0

    def add(self, item: Item) -> None:
        t = estimate_tokens(item)
        if self._n and (self._n >= self.size or self._tokens + t > self.max_tokens):
            self.close()
        if not self._n:
            self._first, self._tokens = item.line, 0
        self._last, self._n, self._tokens = item.line, self._n + 1, self._tokens + t

    def close(self) -> None:
        if self._n:
            self.plans.append((self._first, self._last, self._n))
            self._n = 0


def find_by_idempotency_key(db: Engine | Connection, tenant: str, key: str) -> JobInfo | None:
    q = select(jobs).where(jobs.c.tenant == tenant, jobs.c.idempotency_key == key)
    with reading(db) as conn:
        row = conn.execute(q).first()
    return JobInfo.from_row(row) if row else None


def replay(db: Engine, earlier: JobInfo, fingerprint: str | None) -> CreatedJob:
    """The job an earlier submission with the same key created, if this is the same request.

    IdempotencyMismatch when both fingerprints are known and differ: the key was reused for another
    request, and answering with the first job would silently drop this one. A job stored without a
    fingerprint (before migration 0004, or by a caller that gives none) matches any retry.
    """
    with reading(db) as conn:
        stored = conn.execute(select(jobs.c.request_fingerprint).where(jobs.c.id == earlier.id)).scalar()
    if stored is not None and fingerprint is not None and not hmac.compare_digest(stored, fingerprint):
        raise IdempotencyMismatch(
            "this Idempotency-Key was already used for a different request; "
            "send a new key for a new request, or repeat the first request exactly",
        )
    return CreatedJob(earlier, created=False)


def _settle(fingerprint: Fingerprint, parsed: Iterable[Parsed]) -> str | None:
    """The digest; a deferred one is known only once the whole input has been read."""
    if not callable(fingerprint):
        return fingerprint
    for _ in parsed:
        pass
    return fingerprint()


def create_job(
    db: Engine,
    parsed: Iterable[Parsed],
    *,
    model: str,
    kind: Kind | str = "auto",
    tenant: str = DEFAULT_TENANT,
    chunk_size: int = 256,
    chunk_max_tokens: int = 262_144,
    metadata: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    max_items: int | None = None,
    models: Sequence[str] | None = None,
    fingerprint: Fingerprint = None,
    model_refs: Mapping[str, str] | None = None,
) -> CreatedJob:
    """Store a job from parsed lines (`rmscore.inputs.iter_parsed` / `parse_object` output).

    `model` is a short name (see `resolve_model`); `models` names more to compare it with (each
    item is then scored once per model, on each model's own queue; `total` counts results: lines
    times models). `model_refs` (`Settings.model_refs`) maps each short name to the exact model its
    chunks must be scored with; without it any worker of the name may. Bad lines are stored as
    items with an error result and counted as failed. The job starts `queued` with its chunks
    queued but not yet sent to the broker: call `db.producer.enqueue_job` next (or use
    `db.producer.submit`).
    `fingerprint` identifies the request for idempotency (see `replay`): with an `idempotency_key`
    already used, the earlier job is returned if the fingerprints match.
    Raises BadRequest (empty input, bad options), TooLarge (more than `max_items` lines),
    IdempotencyMismatch (the key was used for another request).
    """
    check_kind(kind)
    opts = check_options(options)
    if idempotency_key is not None:
        earlier = find_by_idempotency_key(db, tenant, idempotency_key)
        if earlier is not None:
            return replay(db, earlier, _settle(fingerprint, parsed))

    job_id = uuid.uuid4().hex
    scored_by = list(dict.fromkeys([model, *(models or [])]))
    planner = _ChunkPlanner(chunk_size, chunk_max_tokens)
    job_kind: str | None = None if kind == "auto" else kind
    total = failed = responses = batch_chars = 0
    item_rows: list[dict[str, Any]] = []
    error_rows: list[dict[str, Any]] = []
    now = utcnow()

    def flush() -> None:
        nonlocal batch_chars
        batch_chars = 0
        if item_rows:
            retrying(lambda: _insert_batch(db, item_rows, error_rows), what="storing items")
            item_rows.clear()
            error_rows.clear()

    try:
        for p in parsed:
            total += 1
            if max_items is not None and total > max_items:
                raise TooLarge(f"a job holds at most {max_items:,} lines", code="too_many_items")
            if isinstance(p, LineError):
                failed += len(scored_by)
                item_rows.append(_item_row(job_id, p.line, p.custom_id, p.subset, None, None))
                record = error_record(p.line, p.custom_id, p.code, p.message, p.subset)
                error_rows.extend(result_row(job_id, m, record, None, now) for m in scored_by)
            else:
                job_kind = job_kind or p.kind
                subset = getattr(p, "subset", None)
                payload = p.payload()
                batch_chars += text_chars(payload)
                item_rows.append(_item_row(job_id, p.line, p.custom_id, subset, payload, content_hash(p)))
                planner.add(p)
                responses += len(p.conversations) if p.kind == "listwise" else 0
            if len(item_rows) >= BATCH or batch_chars >= BATCH_CHARS:
                flush()
        flush()
        planner.close()
        if total == 0:
            raise BadRequest("the input holds no lines to score", code="empty_input")
        job_row = {
            "id": job_id,
            "tenant": tenant,
            "kind": job_kind or "chat",
            "model": model,
            "status": "queued",
            "total": total * len(scored_by),
            "completed": 0,
            "failed": failed,
            "created_at": now,
            "metadata": metadata,
            "options": opts,
            "idempotency_key": idempotency_key,
            # Read after the last line: an upload's digest is complete only now.
            "request_fingerprint": fingerprint() if callable(fingerprint) else fingerprint,
            "responses": responses if job_kind == "listwise" else None,
        }
        if not planner.plans:  # every line failed to parse: nothing to score
            job_row.update(status="failed", failed_at=now, error="no line of the input could be scored")
        retrying(lambda: _insert_job(db, job_row, planner.plans, scored_by, model_refs), what="storing the job")
    except IntegrityError:
        _discard(db, job_id)
        assert idempotency_key is not None
        earlier = find_by_idempotency_key(db, tenant, idempotency_key)
        if earlier is None:
            raise
        # A concurrent submission with the same key stored its job first; the input is read by now.
        return replay(db, earlier, _settle(fingerprint, ()))
    except BaseException:
        _discard(db, job_id)
        raise
    return CreatedJob(get_job(db, job_id), created=True)


def _item_row(
    job_id: str, line: int, custom_id: str | None, subset: str | None, payload: Any, digest: str | None
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "line": line,
        "custom_id": custom_id,
        "subset": subset,
        "payload": payload,
        "content_hash": digest,
    }


def _insert_batch(db: Engine, item_rows: list[dict[str, Any]], error_rows: list[dict[str, Any]]) -> None:
    with writing(db) as conn:
        # Idempotent, so a retried batch after a lost connection cannot fail on its own earlier rows.
        conn.execute(
            delete(items).where(
                items.c.job_id == item_rows[0]["job_id"],
                items.c.line.between(item_rows[0]["line"], item_rows[-1]["line"]),
            )
        )
        conn.execute(items.insert(), item_rows)
        if error_rows:
            insert_missing_results(conn, error_rows)


def _insert_job(
    db: Engine,
    job_row: dict[str, Any],
    plans: list[tuple[int, int, int]],
    models: list[str],
    model_refs: Mapping[str, str] | None = None,
) -> None:
    now = job_row["created_at"]
    with writing(db) as conn:
        if conn.execute(select(jobs.c.id).where(jobs.c.id == job_row["id"])).first():
            return  # a retry after the commit got through
        conn.execute(jobs.insert(), [job_row])
        rows = [
            {
                "job_id": job_row["id"],
                "model": m,
                "model_ref": (model_refs or {}).get(m),
                "first_line": a,
                "last_line": b,
                "n_items": n,
                "status": "queued",
                "attempts": 0,
                "enqueued_at": now,
                "updated_at": now,
            }
            for m in models  # one chunk per range and model, each on its model's queue
            for a, b, n in plans
        ]
        for start in range(0, len(rows), BATCH):
            conn.execute(chunks.insert(), rows[start : start + BATCH])


def _discard(db: Engine, job_id: str) -> None:
    """Remove what a failed submission stored (best effort: the rows are invisible without a job)."""
    try:
        with writing(db) as conn:
            if conn.execute(select(jobs.c.id).where(jobs.c.id == job_id)).first():
                return
            for table in (results, items, chunks):
                conn.execute(delete(table).where(table.c.job_id == job_id))
    except Exception:  # noqa: BLE001 - the original error matters more
        pass


# --------------------------------------------------------------------------- reads


def _named(job_id: str) -> None:
    """NotFound for an id no job can have before it reaches a query: no stored id holds a NUL, and
    PostgreSQL refuses one in a query's text (`/v1/jobs/%00/...` was a 500 there)."""
    if "\x00" in job_id:
        raise NotFound(f"no job {job_id!r}", code="job_not_found")


def get_job(db: Engine | Connection, job_id: str, *, tenant: str | None = None) -> JobInfo:
    """The job, or NotFound (also when it belongs to another tenant: no hint that it exists)."""
    _named(job_id)
    q = select(jobs).where(jobs.c.id == job_id)
    if tenant is not None:
        q = q.where(jobs.c.tenant == tenant)
    with reading(db) as conn:
        row = conn.execute(q).first()
    if row is None:
        raise NotFound(f"no job {job_id!r}", code="job_not_found")
    return JobInfo.from_row(row)


# Jobs list newest first by (created_at, id): the cursor holds both, the whole sort key.
_CURSOR = "jobs"
_CURSOR_FIELDS: tuple[cursors.Field, ...] = ("datetime", "str")


def _encode_cursor(job: JobInfo) -> str:
    return cursors.encode(_CURSOR, job.created_at, job.id)


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    return cursors.decode(cursor, _CURSOR, _CURSOR_FIELDS)


def list_jobs(
    db: Engine,
    *,
    tenant: str | None = None,
    status: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> tuple[list[JobInfo], str | None]:
    """Jobs newest first; returns (page, cursor of the next page or None). `tenant=None`: all tenants."""
    q = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)
    if tenant is not None:
        q = q.where(jobs.c.tenant == tenant)
    if status is not None:
        q = q.where(jobs.c.status == status)
    if cursor is not None:
        at, last_id = _decode_cursor(cursor)
        q = q.where(or_(jobs.c.created_at < at, and_(jobs.c.created_at == at, jobs.c.id < last_id)))
    with reading(db) as conn:
        rows = conn.execute(q).all()
    page = [JobInfo.from_row(r) for r in rows[:limit]]
    return page, (_encode_cursor(page[-1]) if len(rows) > limit else None)


def job_summary(db: Engine, job_id: str, *, tenant: str | None = None) -> dict[str, Any]:
    """The job as JSON plus, for pairwise jobs, accuracy per subset and overall and the evaluation
    tables that apply (RewardBench sections, EvalBiasBench; `rmscore.evaluation.evaluate_accuracy`);
    for listwise jobs the spread of best and worst scores (`best_of_n`) and, for labelled lines,
    mean RewardBench 2 credit per subset and RewardBench 2's table (`db.listwise`)."""
    job = get_job(db, job_id, tenant=tenant)
    out = job.to_dict()
    out["models"] = job_models(db, job)
    out["by_model"] = None
    per_model = {m: _model_summary(db, job, m) for m in out["models"]}
    out.update(per_model[job.model])
    if len(out["models"]) > 1 and job.kind != "chat":
        out["by_model"] = per_model
    return out


def _model_summary(db: Engine, job: JobInfo, model: str) -> dict[str, Any]:
    """One model's accuracy and evaluation (pairwise, labelled listwise), and for listwise jobs the
    spread of best and worst scores (`best_of_n`)."""
    if job.kind == "listwise":
        with reading(db) as conn:
            accuracy, evaluation = listwise_evaluation(conn, job.id, model)
            return {"accuracy": accuracy, "evaluation": evaluation, "best_of_n": best_of_n_spread(conn, job.id, model)}
    accuracy = job_accuracy(db, job.id, model) if job.kind == "pairwise" else None
    return {"accuracy": accuracy, "evaluation": evaluate_accuracy(accuracy)}


def job_models(db: Engine | Connection, job: JobInfo) -> list[str]:
    """The models a job is scored with (its chunks'), the job's own model first."""
    q = select(chunks.c.model).where(chunks.c.job_id == job.id).distinct()
    with reading(db) as conn:
        found = conn.execute(q).scalars().all()
    return [job.model, *sorted(m for m in found if m != job.model)]


# --------------------------------------------------------------------------- state changes


def _open_chunks(job_id: Any) -> Any:
    return exists().where(chunks.c.job_id == job_id, chunks.c.status.in_(CHUNK_OPEN))


def finish_job(conn: Connection, job_id: str, now: datetime | None = None) -> None:
    """Move the job to its end state if it has reached it; a no-op otherwise (safe to call often).

    A job is `completed` once every line has an outcome and at least one was scored, `failed` when
    every line failed, and a `cancelling` job is `cancelled` once no chunk is still running.
    """
    now = now or utcnow()
    all_done = jobs.c.completed + jobs.c.failed >= jobs.c.total
    active = and_(jobs.c.id == job_id, jobs.c.status.in_(JOB_ACTIVE), all_done)
    conn.execute(update(jobs).where(active, jobs.c.completed > 0).values(status="completed", completed_at=now))
    conn.execute(
        update(jobs)
        .where(active, jobs.c.completed == 0)
        .values(status="failed", failed_at=now, error="every line failed; see the job's errors")
    )
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "cancelling", ~_open_chunks(job_id))
        .values(status="cancelled", cancelled_at=now)
    )


def mark_running(db: Engine, job_id: str) -> None:
    def run() -> None:
        with writing(db) as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == "queued")
                .values(status="running", started_at=utcnow())
            )

    retrying(run, what="marking the job running")


def cancel_job(db: Engine, job_id: str, *, tenant: str | None = None) -> JobInfo:
    """Stop a job: chunks not yet started never run; results already scored are kept.

    Chunks being scored right now finish (their results are kept too); the job is `cancelling`
    until they do, then `cancelled`. Cancelling a cancelled job is a no-op; a finished one, Conflict.
    """

    _named(job_id)

    def run() -> JobInfo:
        now = utcnow()
        with writing(db) as conn:
            # Compare-and-set on the status: a job finishing concurrently is never turned back.
            mine = and_(jobs.c.id == job_id, jobs.c.status.in_(JOB_ACTIVE))
            if tenant is not None:
                mine = and_(mine, jobs.c.tenant == tenant)
            if conn.execute(update(jobs).where(mine).values(status="cancelling")).rowcount:
                conn.execute(
                    update(chunks)
                    .where(chunks.c.job_id == job_id, chunks.c.status == "queued")
                    .values(status="cancelled", updated_at=now, error="job cancelled")
                )
                finish_job(conn, job_id, now)
            job = get_job(conn, job_id, tenant=tenant)
            if job.status in ("completed", "failed"):
                raise Conflict(f"job {job_id} already ended ({job.status})", code="job_ended")
            return job

    return retrying(run, what="cancelling the job")


def count_open_chunks(db: Engine, job_id: str) -> int:
    with reading(db) as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(chunks)
                .where(chunks.c.job_id == job_id, chunks.c.status.in_(CHUNK_OPEN))
            ).scalar_one()
        )
