"""Poison items: when a chunk keeps failing, find the items that make scoring raise and fail only them.

A chunk that raised on every attempt but its last is, on that last attempt, scored by halves
(recursively), so one input the model chokes on ends with a `scoring_failed` error (the cause in the
worker's log, not in the tenant's result), and its neighbours get their scores. A chunk that failed
only transiently scores whole.
Only an item's own failure marks it: an infrastructure error (worker/blame.py) met while
bisecting stops the bisection and is raised, so the worker gives the whole chunk back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from db.chunks import SCORING_FAILED
from rmscore import failure_messages
from rmscore.formats import Item, error_record
from worker.blame import is_infrastructure

log = logging.getLogger(__name__)


ScoreFn = Callable[[Sequence[Item]], list[dict[str, Any]]]


def bisect_scores(score: ScoreFn, items: Sequence[Item], *, first_error: BaseException | None = None) -> list[dict]:
    """One record per item, in order: scored where `score` succeeds, a `scoring_failed` error for each
    item that raises even alone. `first_error`: what scoring the whole of `items` raised already,
    so that call is not repeated."""
    if not items:
        return []
    if first_error is not None and is_infrastructure(first_error):
        raise first_error
    if first_error is None:
        try:
            return score(items)
        except Exception as exc:  # noqa: BLE001 - any scoring failure is narrowed down below
            if is_infrastructure(exc):
                raise  # the database or broker failed, not these items: the worker gives the chunk back
            first_error = exc
    if len(items) == 1:
        item = items[0]
        cause = f"{type(first_error).__name__}: {first_error}"
        log.warning("line %d (%s) fails scoring on its own: %s", item.line, item.custom_id, cause)
        # The cause goes to the log only: exception text can name hosts, paths or SQL (rmscore/failure_messages.py).
        message = failure_messages.item_failed(item.line)
        return [error_record(item.line, item.custom_id, SCORING_FAILED, message, getattr(item, "subset", None))]
    mid = len(items) // 2
    return bisect_scores(score, items[:mid]) + bisect_scores(score, items[mid:])


def should_bisect(attempt: int, max_attempts: int, items: Sequence[Item]) -> bool:
    """Only on the chunk's last attempt (earlier failures may be transient: retry whole) and only
    when its items were loaded and there is more than one to tell apart."""
    return attempt >= max_attempts and len(items) > 1

