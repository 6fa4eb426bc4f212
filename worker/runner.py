"""The `rmscore worker` process: one model, loaded once, fed chunks from its model's queue.

One process per GPU. It loads the engine and runs a warm-up batch before it takes any work, then
runs Celery's solo pool in the same process (never a fork after CUDA is initialized). Beside the
consumer, two daemon threads: a heartbeat (`rmscore:worker:<name>:heartbeat`, for health checks
and the API) and the reconciler. SIGTERM is Celery's warm shutdown: the chunk in hand finishes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from celery import Celery
from sqlalchemy import Engine as DbEngine

from db.chunks import (
    ChunkRef,
    Lease,
    chunk_status,
    claim_chunk,
    complete_chunk,
    load_items,
    mark_enqueued,
    new_owner,
    queued_for_model,
    release_chunk,
)
from db.producer import send_chunks
from rmscore import keys
from rmscore.settings import Settings, model_refs_served
from worker import failures, faults, poison

log = logging.getLogger(__name__)
T = TypeVar("T")
# Pause before re-sending a chunk of another model of the same name; below the reconciler's lost-chunk
# grace (2-30 s), so the reconciler does not send a second copy meanwhile.
REFUSED_RESEND_S = 1.5


def node_name(model_name: str, device: str, *, host: str | None = None, suffix: str | None = None) -> str:
    """`<model>@<host>-<device>[-<suffix>]`, e.g. `tiny@gpu-box-cuda0`: what Flower and heartbeats show."""
    host = host or socket.gethostname()
    dev = device.replace(":", "")
    return f"{model_name}@{host}-{dev}" + (f"-{suffix}" if suffix else "")


@dataclass
class WorkerRuntime:
    settings: Settings
    engine: Any  # worker.engine.Engine (typed loosely so this module imports without torch)
    db: DbEngine
    redis: redis.Redis
    app: Celery
    name: str
    started_at: float = field(default_factory=time.time)
    chunks_done: int = 0
    items_done: int = 0
    cache_hits: int = 0  # conversations answered from the score cache instead of the model
    current: Lease | None = None
    online: Any = None  # worker.online.OnlineLane, once started
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def model_refs(self) -> set[str]:
        """The `model_ref`s a chunk may record to be ours: the exact model loaded, never just its name."""
        return model_refs_served(self.engine.model)

    @property
    def queue(self) -> str:
        return keys.score_queue(self.engine.name)

    def process(self, chunk_id: int) -> str:
        """Run one chunk to its end. Outcomes: done, skipped (not ours to run), cancelled (its job was
        cancelled before it started), lost, retry, failed."""
        s = self.settings
        self.redis.delete(keys.chunk_enqueued(chunk_id))  # the broker handed it over
        lease = claim_chunk(
            self.db,
            chunk_id,
            new_owner(self.name),
            lease_seconds=s.lease_seconds,
            max_attempts=s.max_attempts,
            model_refs=self.model_refs,
        )
        if lease is None:
            other = queued_for_model(self.db, chunk_id)
            if other is not None and other[1] not in self.model_refs:
                return self._leave_for_its_model(*other)
            if chunk_status(self.db, chunk_id) == "cancelled":
                # Told apart from "skipped" so the task can end as not run (worker.tasks), not as a success.
                log.info("chunk %s: not run, its job was cancelled", chunk_id)
                return "cancelled"
            log.info("chunk %s: skipped (done, taken or out of attempts)", chunk_id)
            return "skipped"
        self.current = lease
        t0 = time.perf_counter()
        items: list[Any] = []
        try:
            faults.after_claim()
            items = load_items(self.db, lease)
            faults.before_scoring(items)
            records = self._score(items, lease.options, lease.tenant)
        except Exception as exc:  # noqa: BLE001 - any scoring failure is retried, then recorded
            if failures.is_infrastructure(exc):
                return self._hand_back(lease, exc)
            if not poison.should_bisect(lease.attempts, s.max_attempts, items):
                self.current = None
                return self._give_back(lease, exc)
            # Last attempt: fail only the items that make scoring raise (worker/poison.py).
            score = functools.partial(self._score, tenant=lease.tenant)
            try:
                records = poison.bisect_scores(poison.scorer(score, lease.options), items, first_error=exc)
            except Exception as infra:
                if not failures.is_infrastructure(infra):
                    raise
                return self._hand_back(lease, infra)
        try:
            # A database outage while storing is waited out with the lease in hand (the heartbeat
            # names it, so nobody takes it): failing here on a last attempt would fail every item.
            ok = self._through_outage(
                lambda: complete_chunk(self.db, lease, records, self.engine.identity), f"storing chunk {chunk_id}"
            )
        finally:
            # Even when storing failed past all that (an outage longer than the lease): the lease keeper
            # and the heartbeat must let go of this lease, so the reconciler re-queues the chunk.
            self.current = None
        if not ok:
            log.warning("chunk %s: lease lost before it was stored; another worker owns it", chunk_id)
            return "lost"
        with self._lock:
            self.chunks_done += 1
            self.items_done += len(records)
        log.info(
            "chunk %s of job %s: %d items in %.2fs",
            chunk_id,
            lease.job_id,
            len(records),
            time.perf_counter() - t0,
        )
        return "done"

    def _score(self, items: list[Any], options: dict[str, Any], tenant: str) -> list[dict[str, Any]]:
        from db.cache import cache_scope
        from worker.cache import CachingScorer, cache_enabled

        # Conversations this model identity already scored for this tenant (any of its jobs), or for
        # anyone under a shared cache, come from the score cache.
        scope = cache_scope(tenant, self.settings.cache_scope)
        scorer = CachingScorer(self.engine, self.db, scope, enabled=cache_enabled(options))
        records = self._run_engine(scorer, items, options)
        with self._lock:
            self.cache_hits += scorer.hits
        return scorer.mark(items, records)

    def _run_engine(self, scorer: Any, items: list[Any], options: dict[str, Any]) -> list[dict[str, Any]]:
        from worker.scoring import score_items

        budget = options.get("max_batch_tokens")
        saved = self.engine.max_batch_tokens
        # The job's choice, else this worker's RMSCORE_CONTROL_TOKENS (default: the card's semantics).
        control = options.get("control_tokens") or self.settings.control_tokens
        if not budget or budget >= saved:
            return score_items(scorer, items, overflow=options.get("overflow"), control_tokens=control)
        self.engine.max_batch_tokens = budget  # a job may ask for smaller batches, never bigger ones
        try:
            return score_items(scorer, items, overflow=options.get("overflow"), control_tokens=control)
        finally:
            # Keep a budget the engine lowered on out-of-memory; otherwise restore the worker's own.
            if self.engine.max_batch_tokens >= budget:
                self.engine.max_batch_tokens = saved

    def _leave_for_its_model(self, ref: ChunkRef, wanted: str) -> str:
        """A chunk of another model that shares this one's name (and queue): never score it.

        It stays queued, no attempt used, and goes back to the queue for a worker of its model; after
        a pause, so a fleet with no such worker re-sends it every few seconds, not in a busy loop.
        (Re-sent here, not left to the reconciler: its `chunk_enqueued` key may have been set by the
        producer after this worker took the message, and would then hide it for a week.)
        """
        log.warning(
            "chunk %s is for model %s; this worker serves %s: left for a worker of that model",
            ref.id,
            wanted,
            self.engine.model,
        )
        mark_enqueued(self.db, [ref.id])  # the reconciler's grace starts again: it does not send it too
        time.sleep(REFUSED_RESEND_S)
        send_chunks(self.app, self.redis, [ref])
        return "skipped"

    def _through_outage(self, call: Callable[[], T], what: str) -> T:
        """Run a database call for the chunk in hand, waiting out an outage for up to `lease_seconds`.

        Meanwhile the chunk stays ours: the heartbeat names its lease, so the reconciler does not
        take it as abandoned (only the lease's own expiry, about as far off, could). Anything else
        than an outage is raised at once.
        """
        deadline = time.monotonic() + self.settings.lease_seconds
        delay = 1.0
        while True:
            try:
                return call()
            except Exception as exc:
                if not failures.is_infrastructure(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("%s: %s: %s; trying again in %.0fs", what, type(exc).__name__, exc, delay)
                time.sleep(delay)
                delay = min(2 * delay, 15.0)

    def _hand_back(self, lease: Lease, exc: BaseException) -> str:
        """The database or broker failed, not the items: re-queue the chunk without using up an attempt
        (so no outage, however timed, can fail healthy items), once the database answers again."""
        error = f"{type(exc).__name__}: {exc}"
        log.warning("chunk %s: infrastructure error, handing it back (attempt not counted): %s", lease.chunk_id, error)
        try:
            outcome = self._through_outage(
                lambda: release_chunk(self.db, lease, error, max_attempts=self.settings.max_attempts, refund=True),
                f"handing back chunk {lease.chunk_id}",
            )
        finally:
            self.current = None
        if outcome == "queued":
            ref = ChunkRef(lease.chunk_id, lease.job_id, lease.model, lease.n_items)
            try:
                send_chunks(self.app, self.redis, [ref])
            except Exception as send_exc:  # noqa: BLE001 - the reconciler re-sends a queued chunk the broker lacks
                log.warning("chunk %s: re-queued, but not re-sent (%s); the reconciler will", lease.chunk_id, send_exc)
            return "retry"
        return outcome

    def _give_back(self, lease: Lease, exc: Exception) -> str:
        error = f"{type(exc).__name__}: {exc}"
        log.exception("chunk %s failed on attempt %d: %s", lease.chunk_id, lease.attempts, error)
        outcome = release_chunk(self.db, lease, error, max_attempts=self.settings.max_attempts)
        if outcome == "queued":
            send_chunks(self.app, self.redis, [ChunkRef(lease.chunk_id, lease.job_id, lease.model, lease.n_items)])
            return "retry"
        return outcome

    def heartbeat(self) -> dict[str, Any]:
        cur = self.current
        stats = self.engine.stats
        return {
            "name": self.name,
            "model": self.engine.name,
            "model_id": self.engine.model,
            "weights": self.engine.weights,
            "device": self.engine.device,
            "dtype": self.engine.dtype,
            "queue": self.queue,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "at": time.time(),
            "chunks_done": self.chunks_done,
            "items_done": self.items_done,
            "cache_hits": self.cache_hits,
            "engine_items": stats.items,  # conversations through the model (warm-up included)
            "current_chunk": cur.chunk_id if cur else None,
            "current_job": cur.job_id if cur else None,
            # The lease in hand: the reconciler takes a lease back only from a worker whose heartbeat
            # no longer names it (worker/reconcile.py), so it must be exactly the claim's owner.
            "lease_owner": cur.owner if cur else None,
            "max_batch_tokens": self.engine.max_batch_tokens,
            "padding_efficiency": stats.padding_efficiency,
        }


class LeaseKeeper(threading.Thread):
    """Renews the lease of the chunk in hand every `renew_interval` (a third of `heartbeat_ttl`).

    A lease then stays fresh however long a chunk takes, and goes stale only when its worker stops
    (killed, machine lost, hung hard): the reconciler takes a stale lease back once no heartbeat
    names it either (worker/reconcile.py), or at the latest when it expires after `lease_seconds`.
    """

    def __init__(self, runtime: WorkerRuntime) -> None:
        super().__init__(name="rmscore-lease-keeper", daemon=True)
        self.runtime = runtime
        self.stopping = threading.Event()

    def run(self) -> None:
        from db.chunks import renew_lease
        from worker.reconcile import renew_interval

        seconds = self.runtime.settings.lease_seconds
        while not self.stopping.wait(renew_interval(self.runtime.settings)):
            lease = self.runtime.current
            if lease is None:
                continue
            try:
                if not renew_lease(self.runtime.db, lease, seconds):
                    log.warning("chunk %s: lease lost while scoring", lease.chunk_id)
            except Exception as exc:  # noqa: BLE001 - the database may be failing over; try again
                log.warning("chunk %s: lease renewal failed: %s", lease.chunk_id, exc)


class Heartbeat(threading.Thread):
    """Writes the worker's heartbeat key every `heartbeat_interval`, expiring after `heartbeat_ttl`."""

    def __init__(self, runtime: WorkerRuntime) -> None:
        super().__init__(name="rmscore-heartbeat", daemon=True)
        self.runtime = runtime
        self.stopping = threading.Event()

    def beat(self) -> None:
        s = self.runtime.settings
        beat = self.runtime.heartbeat()
        with self.runtime.redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.worker_heartbeat(self.runtime.name), json.dumps(beat), px=int(s.heartbeat_ttl * 1000))
            pipe.set(keys.model_last_seen(self.runtime.engine.name), str(beat["at"]))
            pipe.execute()

    def run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - Redis may be restarting; keep beating
                log.warning("heartbeat failed: %s", exc)
            if self.stopping.wait(self.runtime.settings.heartbeat_interval):
                return


CHUNK_BUDGETS = 16  # micro-batch budgets a chunk should hold (bench/README.md, chunk size guidance)


def warn_small_chunks(chunk_max_tokens: int, max_batch_tokens: int) -> bool:
    """Warn when chunks hold too few micro-batches to pack well; True if it warned.

    The engine packs one chunk per call, so a chunk of only a few budgets ends in a part-empty
    batch and sorts a small pool: on an H200 the engine reached 47% MFU with whole-job calls but
    30% with 512-conversation ones.
    """
    if chunk_max_tokens >= CHUNK_BUDGETS * max_batch_tokens:
        return False
    log.warning(
        "chunks of up to %d tokens hold only %.1f micro-batches of %d tokens: set "
        "RMSCORE_CHUNK_MAX_TOKENS >= %d (and RMSCORE_CHUNK_SIZE to match) to keep the device busy",
        chunk_max_tokens,
        chunk_max_tokens / max_batch_tokens,
        max_batch_tokens,
        CHUNK_BUDGETS * max_batch_tokens,
    )
    return True


def run_worker(
    settings: Settings,
    *,
    model: str,
    device: str,
    max_batch_tokens: int | None = None,
    name: str | None = None,
    suffix: str | None = None,
    loglevel: str = "INFO",
) -> int:
    """Load, warm up, then consume the model's queue until shut down. Returns the exit code."""
    from db.migrate import ensure_schema
    from db.session import get_engine
    from rmscore.broker import create_app, get_redis
    from worker.engine import Engine
    from worker.reconcile import Reconciler

    db = get_engine(settings.database_url)
    ensure_schema(db)
    t0 = time.perf_counter()
    engine = Engine.load(
        model,
        device=device,
        dtype=settings.dtype,
        max_batch_tokens=max_batch_tokens or settings.max_batch_tokens,
        max_batch_size=settings.max_batch_size,
        overflow=settings.overflow,
        lanes=settings.lanes,
    )
    engine.warmup()
    load_seconds = time.perf_counter() - t0
    log.info(
        "loaded %s (weights %s) on %s (%s) in %.1fs, max_batch_tokens %d, lanes %d, %d packed linear layers",
        model,
        engine.weights,
        engine.device,
        engine.dtype,
        load_seconds,
        engine.max_batch_tokens,
        engine.lanes,
        engine.packed_linears,
    )
    warn_small_chunks(settings.chunk_max_tokens, engine.max_batch_tokens)

    app = create_app(settings)
    r = get_redis(settings.broker_url)
    runtime = WorkerRuntime(settings, engine, db, r, app, name or node_name(engine.name, engine.device, suffix=suffix))
    from worker import online, tasks

    tasks.register(app, runtime)
    lane = online.start(runtime, settings.online_window)  # online requests, between micro-batches
    heartbeat = Heartbeat(runtime)
    heartbeat.beat()
    heartbeat.start()
    keeper = LeaseKeeper(runtime)
    keeper.start()
    reconciler = Reconciler(db, r, app, settings)
    reconciler.start()
    from worker import monitoring

    # Stats for Flower (a bootstep, so before app.Worker) and the Prometheus endpoint if a port is set.
    monitoring.install(app, runtime, load_seconds=load_seconds, metrics_port=settings.worker_metrics_port)

    worker = app.Worker(
        hostname=runtime.name,
        queues=[runtime.queue],
        pool_cls="solo",
        concurrency=1,
        loglevel=loglevel,
        send_events=True,
        without_gossip=True,
        without_mingle=True,
        optimization="fair",
    )
    try:
        worker.start()
    finally:
        lane.stop()
        reconciler.stop()
        keeper.stopping.set()
        heartbeat.stopping.set()
        with contextlib.suppress(redis.RedisError):
            r.delete(keys.worker_heartbeat(runtime.name))
    return int(worker.exitcode or 0)


def check_heartbeat(r: redis.Redis, *, name: str | None = None, model_name: str | None = None) -> list[str]:
    """Names of live workers: `name` exactly, or every worker of `model_name` on this host."""
    if name:
        return [name] if r.exists(keys.worker_heartbeat(name)) else []
    pattern = keys.worker_heartbeat(f"{model_name or '*'}@{socket.gethostname()}-*")
    prefix, suffix = keys.worker_heartbeat("\0").split("\0")
    return sorted(k.decode()[len(prefix) : -len(suffix)] for k in r.scan_iter(match=pattern, count=1000))
