"""The worker's cross-cutting concerns, as middleware around the chunk path (dramatiq style).

The chunk path itself (worker/runner.py) reads claim -> prepare -> score -> store; what is not that
path hooks into it here, so each concern has one home and the path does not name any of them:

- `Faults`: test-only delays and poison (worker/faults.py), inert unless their variables are set;
- `Profiler`: cProfile of every stage (worker/profiling.py), only under RMSCORE_PROFILE;
- `ScoreCache`: the score cache (worker/cache.py): lookup before rendering, cached flags and hit
  accounting after the model, new scores remembered before the chunk is stored;
- `PoisonBisection`: on a chunk's last attempt, fail only the items that make scoring raise
  (worker/poison.py).

`build(...)` makes the list once, at start-up; `Chain` runs each hook through the list, in order.
Every hook of `Middleware` does nothing, so a concern overrides only the hooks it needs.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from rmscore.formats import Item
from worker import faults, poison, profiling

if TYPE_CHECKING:
    from sqlalchemy import Engine as DbEngine

    from worker.engine import Scorer
    from worker.runner import InHand

P = ParamSpec("P")
R = TypeVar("R")
Records = list[dict[str, Any]]
# Scores a part of a chunk whole (prepare, model, cache): what poison bisection narrows a failure with.
Rescore = Callable[[Sequence[Item]], Records]


class Middleware:
    """Hooks on a chunk's way through the worker; each does nothing unless overridden."""

    def stage(self, call: Callable[[], R]) -> R:
        """Around each whole stage (prepare, device, store), on that stage's thread."""
        return call()

    def after_claim(self, chunk: InHand) -> None:
        """Prepare stage: the chunk is claimed (leased and held), its items not loaded yet."""

    def before_prepare(self, chunk: InHand) -> None:
        """Prepare stage: the items are loaded, not yet rendered or tokenized."""

    def on_device(self, chunk: InHand) -> None:
        """Device stage: the chunk has reached the device, before anything of it is scored."""

    def before_score(self, items: Sequence[Item]) -> None:
        """Before the model scores `items`: a whole chunk, or a part of one being bisected."""

    def after_score(self, chunk: InHand) -> None:
        """The model scored `chunk` (its `records` set), before they leave the device stage."""

    def recover(self, chunk: InHand, error: Exception, rescore: Rescore) -> Records | None:
        """Scoring `chunk` raised `error` (not the infrastructure): its records after all, or None to
        leave it to the usual retry rules (retried, or failed on its last attempt)."""
        return None

    def before_store(self, chunk: InHand) -> None:
        """Store stage: the chunk's results are final and about to be stored (a bisected part: final)."""


class Faults(Middleware):
    """Fault injection: reads its variables at each hook, as the tests set them per process."""

    def after_claim(self, chunk: InHand) -> None:
        faults.after_claim()

    def on_device(self, chunk: InHand) -> None:
        faults.on_device()

    def before_score(self, items: Sequence[Item]) -> None:
        faults.before_scoring(items)


class Profiler(Middleware):
    """Each stage under its thread's profiler (stats written at exit, worker/profiling.py)."""

    def stage(self, call: Callable[[], R]) -> R:
        return profiling.call(call)


class ScoreCache(Middleware):
    """The score cache in front of the model, per chunk: its scope is the chunk's tenant (or shared)."""

    def __init__(self, engine: Scorer, db: DbEngine, scope_mode: str) -> None:
        self.engine, self.db, self.scope_mode = engine, db, scope_mode
        self.hits = 0  # conversations answered from the cache instead of the model (heartbeat, metrics)
        self._lock = threading.Lock()  # the device thread and a bisection's parts both count

    def before_prepare(self, chunk: InHand) -> None:
        from db.cache import cache_scope
        from worker.cache import CachingScorer, cache_enabled

        # Conversations this model identity already scored for this tenant (any of its jobs), or for
        # anyone under a shared cache, come from the score cache.
        scope = cache_scope(chunk.lease.tenant, self.scope_mode)
        chunk.cache = CachingScorer(self.engine, self.db, scope, enabled=cache_enabled(chunk.lease.options))

    def after_score(self, chunk: InHand) -> None:
        if chunk.cache is None or chunk.prepared is None:
            return
        with self._lock:
            self.hits += len(chunk.prepared.known)
        chunk.records = chunk.cache.mark(chunk.items, chunk.records)

    def before_store(self, chunk: InHand) -> None:
        if chunk.cache is not None and chunk.prepared is not None and chunk.scored is not None:
            chunk.cache.remember(chunk.prepared.todo, chunk.scored)


class PoisonBisection(Middleware):
    """On a chunk's last attempt, score it by halves so only the items that raise fail."""

    def __init__(self, max_attempts: int) -> None:
        self.max_attempts = max_attempts

    def recover(self, chunk: InHand, error: Exception, rescore: Rescore) -> Records | None:
        if not poison.should_bisect(chunk.lease.attempts, self.max_attempts, chunk.items):
            return None
        records = poison.bisect_scores(rescore, chunk.items, first_error=error)
        chunk.scored = None  # bisection's parts filled the score cache themselves
        return records


class Chain:
    """The worker's middleware, run in order for each hook (a `recover`: the first that answers)."""

    def __init__(self, middleware: Sequence[Middleware]) -> None:
        self.middleware = list(middleware)

    def stage(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """`fn(*args, **kwargs)` as a stage, inside every middleware's `stage` (the first outermost)."""
        call: Callable[[], R] = functools.partial(fn, *args, **kwargs)
        for m in reversed(self.middleware):
            call = functools.partial(m.stage, call)
        return call()

    def after_claim(self, chunk: InHand) -> None:
        for m in self.middleware:
            m.after_claim(chunk)

    def before_prepare(self, chunk: InHand) -> None:
        for m in self.middleware:
            m.before_prepare(chunk)

    def on_device(self, chunk: InHand) -> None:
        for m in self.middleware:
            m.on_device(chunk)

    def before_score(self, items: Sequence[Item]) -> None:
        for m in self.middleware:
            m.before_score(items)

    def after_score(self, chunk: InHand) -> None:
        for m in self.middleware:
            m.after_score(chunk)

    def recover(self, chunk: InHand, error: Exception, rescore: Rescore) -> Records | None:
        for m in self.middleware:
            records = m.recover(chunk, error, rescore)
            if records is not None:
                return records
        return None

    def before_store(self, chunk: InHand) -> None:
        for m in self.middleware:
            m.before_store(chunk)

    def cache_hits(self) -> int:
        return sum(m.hits for m in self.middleware if isinstance(m, ScoreCache))


def build(engine: Scorer, db: DbEngine, *, cache_scope: str, max_attempts: int) -> Chain:
    """The worker's middleware, once at start-up. The profiler only under RMSCORE_PROFILE (it slows
    the hot path); fault injection always, as its hooks are inert unless a test sets their variables."""
    chain: list[Middleware] = [Profiler()] if profiling.PATH else []
    chain += [Faults(), ScoreCache(engine, db, cache_scope), PoisonBisection(max_attempts)]
    return Chain(chain)
