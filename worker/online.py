"""The online lane: requests a trainer is waiting on, served between micro-batches of batch work.

The API pushes each online request (`POST /v1/score`, `/get_reward`, `/classify`) as one JSON
object onto the model's Redis list `keys.online_queue(model)` and waits on its reply key. Here:

- while no chunk is being scored, the lane's thread waits on that list and scores at once;
- while a chunk is being scored, the engine calls `serve_pending` at every micro-batch boundary
  (`Scorer.between_batches`), so a request waits for one micro-batch (per lane), never a chunk.
  That is what the Celery sync queue could not give: a solo worker takes its next message only
  after the chunk in hand is stored.

Requests found waiting together are scored in one engine call, so they share micro-batches
(dynamic batching under the engine's token budget), after `online_window` seconds for more to
arrive. The engine and renderer are the batch path's, so a score does not depend on the lane.
A request whose deadline (the API's RMSCORE_SYNC_TIMEOUT) has passed is dropped unscored: the
API has already answered 504.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import redis

from rmscore import keys
from rmscore.formats import item_from_payload
from rmscore.vocabulary import ControlTokens, Overflow
from worker import faults

if TYPE_CHECKING:
    from worker.runner import WorkerRuntime

log = logging.getLogger(__name__)
# BLPOP's wait while idle: under the client's 10 s socket timeout, and short enough that a stop is seen soon.
IDLE_BLOCK_S = 2
# Requests taken off the list at once (their items are bounded by RMSCORE_SYNC_MAX_ITEMS each).
MAX_TAKE = 64
REPLY_TTL_S = 120  # a reply the API no longer waits for (it answered 504) expires


def score_request(
    runtime: WorkerRuntime,
    items: list[dict[str, Any]],
    overflow: Overflow | None,
    control_tokens: ControlTokens | None = None,
) -> dict[str, Any]:
    """Score `items` (`{kind, line, custom_id, subset, payload}`, as api/online.py sends them) with the
    runtime's engine: the batch path's scoring, so the scores are the card's. Nothing is stored."""
    from worker.scoring import score_items

    parsed = [item_from_payload(i["kind"], i["line"], i.get("custom_id"), i.get("subset"), i["payload"]) for i in items]
    faults.before_scoring(parsed)  # inert unless a test asks for it, as on the batch path
    control = control_tokens or runtime.settings.control_tokens
    records = score_items(runtime.engine, parsed, overflow=overflow, control_tokens=control)
    return {"records": records, "model_identity": runtime.engine.identity, "worker": runtime.name}


@dataclass
class OnlineStats:
    """What monitoring shows (worker/metrics.py, Flower): counts, and per request the seconds from the
    API's send to the start of scoring (queue wait) and to the reply (latency). Both span two hosts'
    clocks when the API runs elsewhere: NTP-level skew, milliseconds."""

    requests: int = 0
    items: int = 0
    expired: int = 0  # dropped unscored: the API had already answered 504
    serves: int = 0  # engine calls; requests / serves is how much requests were coalesced
    recent: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=512))  # (wait, latency)
    on_request: Callable[[float, float], None] | None = field(default=None, repr=False)  # Prometheus

    def observe(self, wait: float, latency: float) -> None:
        self.recent.append((wait, latency))
        if self.on_request is not None:
            self.on_request(wait, latency)

    def summary(self) -> dict[str, Any]:
        """Counts, and the p50/p99 of the last 512 requests' wait and latency, in seconds (Flower)."""
        waits = sorted(w for w, _ in self.recent)
        lats = sorted(lat for _, lat in self.recent)

        def q(xs: list[float], p: float) -> float | None:
            return round(xs[min(len(xs) - 1, int(p * len(xs)))], 4) if xs else None

        return {
            "requests": self.requests,
            "items": self.items,
            "expired": self.expired,
            "engine_calls": self.serves,
            "wait_p50_s": q(waits, 0.5),
            "latency_p50_s": q(lats, 0.5),
            "latency_p99_s": q(lats, 0.99),
        }


class OnlineLane(threading.Thread):
    def __init__(self, runtime: WorkerRuntime, *, window: float) -> None:
        super().__init__(name="rmscore-online", daemon=True)
        self.runtime = runtime
        self.window = window
        self.queue = keys.online_queue(runtime.engine.name)
        self.stats = OnlineStats()
        self.stopping = threading.Event()
        self._inbox: deque[bytes] = deque()
        self._serving = threading.Lock()  # one serve at a time; a boundary inside a serve does not nest

    # ------------------------------------------------------------------ the thread (idle worker)

    def run(self) -> None:
        engine = self.runtime.engine
        while not self.stopping.is_set():
            if not self._inbox:
                try:
                    got = self.runtime.redis.blpop([self.queue], timeout=IDLE_BLOCK_S)
                except redis.RedisError as exc:
                    log.warning("online lane: %s; trying again", exc)
                    self.stopping.wait(1)
                    continue
                if got is None:
                    continue
                # The client leaves replies undecoded (rmscore.broker.get_redis): the request's bytes.
                self._inbox.append(cast("bytes", got[1]))
            # Idle: score now. Busy (a chunk holds the engine): its next micro-batch boundary serves
            # the inbox (serve_pending); look again shortly.
            if engine.gate.acquire(timeout=0.05):
                try:
                    self.serve()
                finally:
                    engine.gate.release()

    def stop(self) -> None:
        """Stop taking requests; those taken but not served go back to the head of the list, for
        another worker (or this one after a restart) rather than a 504."""
        self.stopping.set()
        left = []
        while self._inbox:
            left.append(self._inbox.popleft())
        if left:
            try:
                self.runtime.redis.lpush(self.queue, *reversed(left))
            except redis.RedisError as exc:
                log.warning("online lane: %d requests not handed back: %s", len(left), exc)

    # ------------------------------------------------------------------ serving

    def serve_pending(self) -> None:
        """`Scorer.between_batches`: serve what the thread has taken, if anything (cheap otherwise)."""
        if self._inbox:
            self.serve()

    def serve(self) -> int:
        """Score every request waiting (inbox, then the list), replies pushed; the number served."""
        if not self._serving.acquire(blocking=False):
            return 0  # a serve is running on this thread's stack (a boundary inside it)
        try:
            raw = self._take()
            if not raw:
                return 0
            if self.window > 0 and len(raw) < MAX_TAKE:
                time.sleep(self.window)  # let concurrent requests join this engine call
                raw += self._take(MAX_TAKE - len(raw))
            return self._score(raw)
        finally:
            self._serving.release()

    def _take(self, limit: int = MAX_TAKE) -> list[bytes]:
        raw: list[bytes] = []
        while self._inbox and len(raw) < limit:
            raw.append(self._inbox.popleft())
        if len(raw) < limit:
            try:
                # With a count, LPOP answers a list (of undecoded bytes) or None.
                raw += cast("list[bytes] | None", self.runtime.redis.lpop(self.queue, limit - len(raw))) or []
            except redis.RedisError as exc:  # the inbox is still served; the list is retried later
                log.warning("online lane: %s", exc)
        return raw

    def _score(self, raw: list[bytes]) -> int:
        start = time.time()
        requests: list[dict[str, Any]] = []
        for blob in raw:
            try:
                req = json.loads(blob)
                ok = str(req["reply_to"]).startswith(keys.SYNC_REPLY_PREFIX) and isinstance(req["items"], list)
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                log.warning("online lane: a malformed request was dropped")
                continue
            if float(req.get("deadline", start + 1)) < start:
                self.stats.expired += 1
                continue
            requests.append(req)
        # One engine call per (overflow, control_tokens): requests that agree share micro-batches.
        groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
        for req in requests:
            groups.setdefault((req.get("overflow"), req.get("control_tokens")), []).append(req)
        replies: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for (overflow, control), group in groups.items():
            replies += self._score_group(group, overflow, control)
        self._reply(replies, start)
        return len(requests)

    def _score_group(
        self, group: list[dict[str, Any]], overflow: Overflow | None, control: ControlTokens | None
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        items = [item for req in group for item in req["items"]]
        try:
            reply = score_request(self.runtime, items, overflow, control)
        except Exception:  # noqa: BLE001 - find the request that fails; the others still get scores
            if len(group) > 1:
                return [pair for req in group for pair in self._score_group([req], overflow, control)]
            log.exception("online request failed")
            return [(group[0], {"error": {"code": "scoring_failed", "message": "see the worker's log"}})]
        self.stats.serves += 1
        out = []
        records = reply.pop("records")
        pos = 0
        for req in group:
            n = len(req["items"])
            out.append((req, {**reply, "records": records[pos : pos + n]}))
            pos += n
        return out

    def _reply(self, replies: list[tuple[dict[str, Any], dict[str, Any]]], start: float) -> None:
        if not replies:
            return
        done = time.time()
        with self.runtime.redis.pipeline(transaction=False) as pipe:
            for req, reply in replies:
                pipe.rpush(req["reply_to"], json.dumps(reply))
                pipe.expire(req["reply_to"], REPLY_TTL_S)
            try:
                pipe.execute()
            except redis.RedisError as exc:  # the API times out on these (504) and the trainer retries
                log.warning("online lane: replies lost: %s", exc)
                return
        for req, _ in replies:
            self.stats.requests += 1
            self.stats.items += len(req["items"])
            sent = float(req.get("sent_at", start))
            self.stats.observe(max(0.0, start - sent), max(0.0, done - sent))


def start(runtime: WorkerRuntime, window: float) -> OnlineLane:
    """Start the lane for `runtime`'s engine and hook it into the engine's micro-batch boundaries."""
    lane = OnlineLane(runtime, window=window)
    runtime.online = lane
    runtime.engine.between_batches = lane.serve_pending
    lane.start()
    return lane
