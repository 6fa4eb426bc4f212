"""The `rmscore worker` process: one model, loaded once, fed chunks from its model's queue.

One process per GPU. It loads the engine and runs a warm-up batch before it takes any work, then
runs Celery's solo pool in the same process (never a fork after CUDA is initialized). Beside the
consumer, daemon threads: a heartbeat (`rmscore:worker:<name>:heartbeat`, for health checks and the
API), the lease keeper, the reconciler, and the device and store stages of the chunk pipeline
(worker/chunk_pipeline.py: chunk N+1 is prepared and N-1 stored while N is on the device).
SIGTERM is Celery's warm shutdown: the chunks in hand (at most three) are finished and stored.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

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
from rmscore.formats import Item
from rmscore.settings import Settings, model_refs_served
from worker import blame
from worker.cache import CachingScorer
from worker.chunk_pipeline import ChunkPipeline
from worker.middleware import Chain, build

if TYPE_CHECKING:
    # These import torch: named for the checker only, so this module imports without it.
    from worker.engine import Rejected, Scored, Scorer
    from worker.online import OnlineLane
    from worker.scoring import Prepared

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
class InHand:
    """A chunk this worker holds the lease of, on its way through the pipeline (worker/chunk_pipeline.py)."""

    lease: Lease
    started: float = field(default_factory=time.perf_counter)
    items: list[Item] = field(default_factory=list)
    cache: CachingScorer | None = None
    prepared: Prepared | None = None
    # Preparing raised (not the infrastructure): the device stage meets the error, so the chunk is
    # retried, given back or bisected by the same rules as when scoring raises.
    error: Exception | None = None
    scored: list[Scored | Rejected] | None = None  # the model's results for `prepared.todo`, for the score cache
    records: list[dict[str, Any]] = field(default_factory=list)
    # How it ended, for the task's result (Flower shows it): scoring until a stage settles it.
    outcome: str = "scoring"


@dataclass
class WorkerRuntime:
    settings: Settings
    engine: Scorer
    db: DbEngine
    redis: redis.Redis
    app: Celery
    name: str
    started_at: float = field(default_factory=time.time)
    chunks_done: int = 0
    items_done: int = 0
    online: OnlineLane | None = None  # once started
    current: Lease | None = None  # the chunk on the device
    # Every lease in hand, by chunk: being prepared, on the device, being stored. The lease keeper
    # renews each and the heartbeat names each, from the claim until the chunk leaves the worker.
    held: dict[int, Lease] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _pipeline: ChunkPipeline[InHand] | None = field(default=None, repr=False)
    # Fault injection, profiling, score cache, poison bisection (worker/middleware.py): built once.
    middleware: Chain = field(init=False, repr=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.middleware = build(self.engine, self.db, cache_scope=s.cache_scope, max_attempts=s.max_attempts)

    @property
    def cache_hits(self) -> int:
        """Conversations answered from the score cache instead of the model."""
        return self.middleware.cache_hits()

    @property
    def model_refs(self) -> set[str]:
        """The `model_ref`s a chunk may record to be ours: the exact model loaded, never just its name."""
        return model_refs_served(self.engine.model)

    @property
    def queue(self) -> str:
        return keys.score_queue(self.engine.name)

    @property
    def overlap(self) -> bool:
        """Prepare chunk N+1 and store N-1 while N is on the device (RMSCORE_WORKER_OVERLAP; unset: CUDA only)."""
        chosen = self.settings.worker_overlap
        return str(self.engine.device).startswith("cuda") if chosen is None else chosen

    @property
    def pipeline(self) -> ChunkPipeline[InHand]:
        """The device and store stages (started on first use: only a worker that takes chunks needs them)."""
        with self._lock:
            if self._pipeline is None:
                self._pipeline = ChunkPipeline(
                    lambda chunk: self.middleware.stage(self._on_device, chunk),
                    lambda chunk: self.middleware.stage(self._store, chunk),
                )
            return self._pipeline

    def finish(self) -> None:
        """Warm shutdown: the chunks in hand are scored and stored before the worker exits."""
        if self._pipeline is not None:
            self._pipeline.close()

    def leases(self) -> list[Lease]:
        with self._lock:
            return list(self.held.values())

    def _hold(self, lease: Lease) -> None:
        with self._lock:
            self.held[lease.chunk_id] = lease

    def _let_go(self, lease: Lease) -> None:
        """The chunk left this worker (stored, given or handed back, or lost): stop renewing and naming it."""
        with self._lock:
            if self.held.get(lease.chunk_id) is lease:
                del self.held[lease.chunk_id]

    def process(self, chunk_id: int) -> str:
        """The prepare stage of one chunk: claim it, load, render and tokenize it, hand it to the device.

        Outcomes: scoring (overlap on: on the device now, scored and stored behind the next chunk's
        preparation; overlap off: how the chunk ended instead, done, lost or what handing it back said),
        skipped (not ours to run), cancelled (its job was cancelled before it started), retry (handed
        back: the database or broker failed while preparing it)."""
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
        self._hold(lease)
        chunk = InHand(lease)
        try:
            self.middleware.after_claim(chunk)
            chunk.items = load_items(self.db, lease)
            self._prepare(chunk)
        except Exception as exc:  # noqa: BLE001 - sorted out here or, for the items' own, on the device
            if blame.is_infrastructure(exc):
                return self._hand_back(lease, exc)
            chunk.error = exc
        self.pipeline.submit(chunk)
        if not self.overlap:
            self.pipeline.wait_idle()  # one chunk at a time, start to end: say how it ended
        return chunk.outcome

    def _prepare(self, chunk: InHand) -> None:
        """The chat template and the tokenizer for the chunk's items (no device); a middleware may
        answer some conversations first (the score cache's `lookup`)."""
        from worker.scoring import prepare_items

        self.middleware.before_prepare(chunk)
        options = chunk.lease.options
        cache = chunk.cache
        lookup = None if cache is None else functools.partial(cache.lookup, overflow=options.get("overflow"))
        control = options.get("control_tokens") or self.settings.control_tokens
        chunk.prepared = prepare_items(self.engine.renderer, chunk.items, control_tokens=control, lookup=lookup)

    def _on_device(self, chunk: InHand) -> InHand | None:
        """The device stage: the chunk to store, or None when it was given or handed back."""
        lease = chunk.lease
        self.current = lease
        try:
            self.middleware.on_device(chunk)
            self._score(chunk)
        except Exception as exc:  # noqa: BLE001 - any scoring failure is retried, then recorded
            if blame.is_infrastructure(exc):
                chunk.outcome = self._hand_back(lease, exc)
                return None
            try:
                # Last attempt: the poison middleware fails only the items that make scoring raise.
                records = self.middleware.recover(chunk, exc, functools.partial(self._score_part, lease))
            except Exception as infra:
                if not blame.is_infrastructure(infra):
                    self._let_go(lease)  # a bug: the reconciler takes the chunk back
                    raise
                chunk.outcome = self._hand_back(lease, infra)
                return None
            if records is None:
                chunk.outcome = self._give_back(lease, exc)
                return None
            chunk.records = records
        finally:
            self.current = None
        return chunk

    def _score(self, chunk: InHand) -> None:
        """The model's pass over a prepared chunk: its records, and its new scores in `chunk.scored`."""
        from worker.scoring import score_prepared, shape_records

        self.middleware.before_score(chunk.items)
        if chunk.error is not None:
            raise chunk.error  # preparing raised: met here, so the same retry rules apply
        prepared, options = chunk.prepared, chunk.lease.options
        assert prepared is not None
        overflow = options.get("overflow")
        results = self._run_engine(lambda: score_prepared(self.engine, prepared, overflow=overflow), options)
        chunk.records = shape_records(prepared, results)
        chunk.scored = [results[i] for i in prepared.todo]
        self.middleware.after_score(chunk)

    def _store(self, chunk: InHand) -> None:
        """The store stage: the results and the chunk done, in one transaction."""
        lease = chunk.lease
        try:
            self.middleware.before_store(chunk)
            records = chunk.records
            # A database outage while storing is waited out with the lease in hand (the heartbeat
            # names it, so nobody takes it): failing here on a last attempt would fail every item.
            ok = self._through_outage(
                lambda: complete_chunk(self.db, lease, records, self.engine.identity), f"storing chunk {lease.chunk_id}"
            )
        finally:
            # Even when storing failed past all that (an outage longer than the lease): the lease keeper
            # and the heartbeat must let go of this lease, so the reconciler re-queues the chunk.
            self._let_go(lease)
        if not ok:
            chunk.outcome = "lost"
            log.warning("chunk %s: lease lost before it was stored; another worker owns it", lease.chunk_id)
            return
        chunk.outcome = "done"
        with self._lock:
            self.chunks_done += 1
            self.items_done += len(records)
        log.info(
            "chunk %s of job %s: %d items in %.2fs",
            lease.chunk_id,
            lease.job_id,
            len(records),
            time.perf_counter() - chunk.started,
        )

    def _score_part(self, lease: Lease, items: Sequence[Item]) -> list[dict[str, Any]]:
        """Prepare, score and finish part of a chunk in one go, on the calling thread (poison
        bisection's parts): the same middleware as a whole chunk, but never stored as one."""
        part = InHand(lease, items=list(items))
        self._prepare(part)
        self._score(part)
        self.middleware.before_store(part)
        return part.records

    def _run_engine(self, score: Callable[[], T], options: dict[str, Any]) -> T:
        budget = options.get("max_batch_tokens")
        saved = self.engine.max_batch_tokens
        if not budget or budget >= saved:
            return score()
        self.engine.max_batch_tokens = budget  # a job may ask for smaller batches, never bigger ones
        try:
            return score()
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
                if not blame.is_infrastructure(exc) or time.monotonic() + delay > deadline:
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
            self._let_go(lease)
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
        try:
            outcome = release_chunk(self.db, lease, error, max_attempts=self.settings.max_attempts)
        finally:
            self._let_go(lease)
        if outcome == "queued":
            send_chunks(self.app, self.redis, [ChunkRef(lease.chunk_id, lease.job_id, lease.model, lease.n_items)])
            return "retry"
        return outcome

    def heartbeat(self) -> dict[str, Any]:
        held = self.leases()
        cur = self.current or (held[0] if held else None)
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
            # The leases in hand: the reconciler takes a lease back only from a worker whose heartbeat
            # no longer names it (worker/reconcile.py), so each must be exactly its claim's owner.
            # `lease_owner` (one of them) is what heartbeats named before the pipeline held several.
            "lease_owner": cur.owner if cur else None,
            "lease_owners": [lease.owner for lease in held],
            "overlap": self.overlap,
            "chunks_in_hand": [lease.chunk_id for lease in held],
            "max_batch_tokens": self.engine.max_batch_tokens,
            "padding_efficiency": stats.padding_efficiency,
        }


class LeaseKeeper(threading.Thread):
    """Renews the lease of every chunk in hand (being prepared, scored or stored) every
    `renew_interval` (a third of `heartbeat_ttl`).

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
            for lease in self.runtime.leases():
                try:
                    if not renew_lease(self.runtime.db, lease, seconds):
                        log.warning("chunk %s: lease lost while in hand", lease.chunk_id)
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
    burst: bool = False,
) -> int:
    """Load, warm up, then consume the model's queue until shut down (with `burst`, until nothing is
    left for it: worker/burst.py). Returns the exit code."""
    from db.migrate import ensure_schema
    from db.session import get_engine
    from rmscore.broker import create_app, get_redis
    from worker.engine import Scorer
    from worker.reconcile import Reconciler

    db = get_engine(settings.database_url)
    ensure_schema(db)
    t0 = time.perf_counter()
    engine = Scorer.load(
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

    drain = None
    if burst:
        from celery.signals import worker_ready

        from worker.burst import Burst

        drain = Burst(runtime)
        worker_ready.connect(lambda **_: drain.start(), weak=False)  # Celery's SIGTERM handler is in place
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
        runtime.finish()  # warm shutdown: the chunks in hand are scored and stored, the lease keeper still on
        if drain is not None:
            drain.stopping.set()
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
