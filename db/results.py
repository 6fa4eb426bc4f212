"""Results: output records <-> rows, the idempotent upsert, and reads in input order.

A result row is keyed by (job, line, model), so writing the same chunk twice (a redelivered task)
overwrites rather than duplicates. Rows read back as the records `rmscore score` writes, plus
`cached` on every scored line (whether its score came from the score cache, not the model).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Integer, and_, cast, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from db.models import items, jobs, results
from db.session import reading
from rmscore.errors import NotFound
from rmscore.formats import chat_record, error_record, listwise_record, pair_record
from rmscore.summary import accuracy_summary

BATCH = 1000  # rows per executemany / per page read: no per-row round trips, bounded memory
_UPSERT_COLUMNS = (
    "custom_id",
    "subset",
    "score",
    "chosen_score",
    "rejected_score",
    "correct",
    "num_tokens",
    "truncated",
    "error_code",
    "error_message",
    "model_identity",
    "cached",
    "scores",
    "best",
    "worst",
    "best_score",
    "worst_score",
    "credit",
    "scored_at",
)
NOT_SCORED = {
    "cancelled": ("cancelled", "the job was cancelled before this line was scored"),
    "failed": ("not_scored", "the job failed before this line was scored"),
    "completed": ("not_scored", "the job ended without scoring this line"),
}


def result_row(
    job_id: str,
    model: str,
    record: dict[str, Any],
    identity: dict[str, Any] | None,
    scored_at: datetime,
    *,
    subset: str | None = None,
) -> dict[str, Any]:
    """One results row from a `score_items` record (chat, pair, listwise or error shape)."""
    row: dict[str, Any] = {
        "job_id": job_id,
        "line": record["line"],
        "model": model,
        "custom_id": record.get("custom_id"),
        "subset": record.get("subset", subset),
        "score": None,
        "chosen_score": None,
        "rejected_score": None,
        "correct": None,
        "num_tokens": None,
        "truncated": None,
        "error_code": None,
        "error_message": None,
        "model_identity": identity,
        "cached": None,
        "scores": None,
        "best": None,
        "worst": None,
        "best_score": None,
        "worst_score": None,
        "credit": None,
        "scored_at": scored_at,
    }
    if record.get("neutralized"):
        # Stored in the row's identity JSON (no new column): what the model saw was the content with
        # its control-token strings broken (`worker.render.ControlStrings`), not the content as sent.
        row["model_identity"] = {**(identity or {}), "neutralized": True}
    if "error" in record:
        row["error_code"] = record["error"]["code"]
        row["error_message"] = record["error"]["message"]
    elif "scores" in record:
        scores = record["scores"]
        row.update(
            scores=scores,
            best=record["best"],
            worst=record["worst"],
            best_score=scores[record["best"]],
            worst_score=scores[record["worst"]],
            credit=record.get("correct"),
            truncated=bool(record.get("truncated")),
            cached=bool(record.get("cached")),
        )
    elif "chosen_score" in record:
        row.update(
            chosen_score=record["chosen_score"],
            rejected_score=record["rejected_score"],
            correct=record["chosen_score"] > record["rejected_score"],
            truncated=bool(record.get("truncated")),
            cached=bool(record.get("cached")),
        )
    else:
        row.update(
            score=record["score"],
            num_tokens=record["num_tokens"],
            truncated=bool(record["truncated"]),
            cached=bool(record.get("cached")),
        )
    return row


def upsert_results(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or overwrite, keyed by (job_id, line, model): replaying a chunk never adds a row."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for start in range(0, len(rows), BATCH):
        stmt = insert(results)
        stmt = stmt.on_conflict_do_update(
            index_elements=["job_id", "line", "model"],
            set_={c: stmt.excluded[c] for c in _UPSERT_COLUMNS},
        )
        conn.execute(stmt, list(rows[start : start + BATCH]))


def insert_missing_results(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows whose key has no result yet; keep any result already there."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for start in range(0, len(rows), BATCH):
        stmt = insert(results).on_conflict_do_nothing(index_elements=["job_id", "line", "model"])
        conn.execute(stmt, list(rows[start : start + BATCH]))


def row_record(kind: str, row: Any) -> dict[str, Any]:
    """The `rmscore score` record for a results row (joined with its item), with `cached` when scored."""
    if row.error_code is not None:
        return error_record(row.line, row.custom_id, row.error_code, row.error_message, row.subset)
    if kind == "listwise":
        rec = listwise_record(row.line, row.custom_id, row.subset, list(row.scores), bool(row.truncated))
        if row.credit is not None:
            rec["correct"] = row.credit
    elif kind == "pairwise":
        rec = pair_record(
            row.line, row.custom_id, row.subset, row.chosen_score, row.rejected_score, bool(row.truncated)
        )
    else:
        rec = chat_record(row.line, row.custom_id, row.score, row.num_tokens, bool(row.truncated))
    # Every export says where a score came from: rows stored before migration 0003 read as not cached.
    rec["cached"] = bool(getattr(row, "cached", False))
    if neutralized(row):
        rec["neutralized"] = True
    return rec


def neutralized(row: Any) -> bool:
    """Whether the row's content had control-token strings neutralized (options.control_tokens)."""
    identity = getattr(row, "model_identity", None)
    return isinstance(identity, dict) and identity.get("neutralized") is True


def _job_head(conn: Connection, job_id: str, tenant: str | None) -> Any:
    q = select(jobs.c.kind, jobs.c.model, jobs.c.status).where(jobs.c.id == job_id)
    if tenant is not None:
        q = q.where(jobs.c.tenant == tenant)
    head = conn.execute(q).first()
    if head is None:
        raise NotFound(f"no job {job_id!r}", code="job_not_found")
    return head


def iter_results(
    db: Engine,
    job_id: str,
    *,
    tenant: str | None = None,
    after_line: int = 0,
    limit: int | None = None,
    errors_only: bool = False,
    include_unscored: bool = True,
    model: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Records of a job in input order, one per line that has an outcome.

    Lines with no result yet are left out while the job runs; once it has ended (cancelled, say)
    each is reported as an error (`cancelled` / `not_scored`) so every line is accounted for.
    Reads in pages of `BATCH` lines, each its own short transaction: no cursor stays open while
    the caller writes a file or an HTTP response. Resume with `after_line` (the last line seen).
    `model`: whose results, for a job scored by several models [the job's own model].
    """
    with reading(db) as conn:
        head = _job_head(conn, job_id, tenant)
    unscored = NOT_SCORED.get(head.status) if include_unscored else None
    yielded = 0
    while limit is None or yielded < limit:
        page = BATCH if limit is None else min(BATCH, limit - yielded)
        q = (
            select(
                items.c.line,
                items.c.custom_id,
                items.c.subset,
                results.c.score,
                results.c.chosen_score,
                results.c.rejected_score,
                results.c.num_tokens,
                results.c.truncated,
                results.c.error_code,
                results.c.error_message,
                results.c.cached,
                results.c.model_identity,
                results.c.scores,
                results.c.credit,
                results.c.line.label("result_line"),
            )
            .select_from(
                items.outerjoin(
                    results,
                    and_(
                        results.c.job_id == items.c.job_id,
                        results.c.line == items.c.line,
                        results.c.model == (model or head.model),
                    ),
                )
            )
            .where(items.c.job_id == job_id, items.c.line > after_line)
            .order_by(items.c.line)
            .limit(page)
        )
        if errors_only:
            q = q.where((results.c.error_code.is_not(None)) | (results.c.line.is_(None)))
        with reading(db) as conn:
            rows = conn.execute(q).all()
        if not rows:
            return
        for row in rows:
            after_line = row.line
            if row.result_line is None:
                if unscored is None:
                    continue
                rec = error_record(row.line, row.custom_id, *unscored, row.subset)
            else:
                rec = row_record(head.kind, row)
            yield rec
            yielded += 1
            if limit is not None and yielded >= limit:
                return


def job_accuracy(db: Engine | Connection, job_id: str, model: str, kind: str = "pairwise") -> dict[str, Any] | None:
    """Accuracy per subset and overall (`rmscore.summary.accuracy_summary` shape); None for chat.

    Pairwise: the share of pairs ranked right. Listwise: the mean of labelled lines' RewardBench 2
    credit (`rmscore.formats.best_of_n_credit`), so a "correct" count may be fractional.
    """
    value = results.c.credit if kind == "listwise" else results.c.correct
    right = func.sum(value) if kind == "listwise" else func.sum(cast(value, Integer))
    q = (
        select(results.c.subset, func.count(), right)
        .where(results.c.job_id == job_id, results.c.model == model, value.is_not(None))
        .group_by(results.c.subset)
    )
    with reading(db) as conn:
        rows = conn.execute(q).all()
    per_subset: dict[str, tuple[float, int]] = {}
    for subset, n, got in rows:
        name = subset or "all"
        r0, n0 = per_subset.get(name, (0, 0))
        per_subset[name] = (r0 + (float(got or 0) if kind == "listwise" else int(got or 0)), n0 + int(n))
    return accuracy_summary(per_subset)
