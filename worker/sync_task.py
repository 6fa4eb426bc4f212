"""The worker side of `POST /v1/score`: score a few items now, ahead of batch chunks.

The API sends `rmscore.keys.TASK_SCORE_SYNC` to the model's sync queue with the items (already
validated) and a reply key; the worker scores them with its loaded engine and pushes one JSON
reply onto that key, which the API is waiting on (BLPOP). Nothing is stored in the database.
A request the API gave up on expires in the broker (`expires`) and is never scored.

`register(app, runtime)` (called by `rmscore worker` beside `worker.tasks.register`) registers the
task and makes the worker consume the sync queue before its batch queue.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from celery import Celery, signals

from rmscore import keys
from rmscore.formats import item_from_payload
from worker import faults

if TYPE_CHECKING:
    from worker.runner import WorkerRuntime

log = logging.getLogger(__name__)
REPLY_TTL_S = 120
reply_key = keys.sync_reply
_REPLY_PREFIX = keys.SYNC_REPLY_PREFIX


def score_request(
    runtime: Any, items: list[dict[str, Any]], overflow: str | None, control_tokens: str | None = None
) -> dict[str, Any]:
    """Score `items` (`{kind, line, custom_id, subset, payload}`) with the runtime's engine."""
    from worker.scoring import score_items

    parsed = [item_from_payload(i["kind"], i["line"], i.get("custom_id"), i.get("subset"), i["payload"]) for i in items]
    faults.before_scoring(parsed)  # inert unless a test asks for it, as on the batch path
    control = control_tokens or runtime.settings.control_tokens
    records = score_items(runtime.engine, parsed, overflow=overflow, control_tokens=control)  # type: ignore[arg-type]
    return {"records": records, "model_identity": runtime.engine.identity, "worker": runtime.name}


def register(app: Celery, runtime: WorkerRuntime) -> None:
    """Register the sync task on `app` and consume `sync_queue(model)` ahead of the batch queue."""
    sync_queue = keys.sync_queue(runtime.engine.name)

    # The broker polls queues in the order given, not round-robin: sync requests go first.
    opts = dict(app.conf.broker_transport_options or {})
    opts["queue_order_strategy"] = "priority"
    app.conf.broker_transport_options = opts

    @app.task(name=keys.TASK_SCORE_SYNC, ignore_result=True, acks_late=False)
    def score_sync(
        items: list[dict[str, Any]], reply_to: str, overflow: str | None = None, control_tokens: str | None = None
    ) -> str:
        if not reply_to.startswith(_REPLY_PREFIX):
            log.warning("sync request with a foreign reply key %r: ignored", reply_to)
            return "refused"
        t0 = time.perf_counter()
        try:
            reply = score_request(runtime, items, overflow, control_tokens)
        except Exception as exc:  # noqa: BLE001 - the caller gets the error instead of a timeout
            log.exception("sync request failed")
            reply = {"error": {"code": "scoring_failed", "message": f"{type(exc).__name__}: {exc}"}}
        with runtime.redis.pipeline(transaction=False) as pipe:
            pipe.rpush(reply_to, json.dumps(reply))
            pipe.expire(reply_to, REPLY_TTL_S)
            pipe.execute()
        log.info("sync request: %d items in %.3fs", len(items), time.perf_counter() - t0)
        return "done"

    @signals.celeryd_after_setup.connect(weak=False)
    def _consume_sync_first(sender: Any, instance: Any, **_: Any) -> None:
        queues = instance.app.amqp.queues
        names = [sync_queue, *[n for n in (queues.consume_from or {}) if n != sync_queue]]
        queues.select_add(sync_queue)
        queues.select(names)
