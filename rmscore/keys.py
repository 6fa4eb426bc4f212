"""Every Redis key and Celery queue name rmscore uses, in one place."""

from __future__ import annotations

PREFIX = "rmscore"
TASK_SCORE_CHUNK = "rmscore.score_chunk"


def score_queue(model_name: str) -> str:
    """Batch work for one model: only workers holding that model consume it."""
    return f"score.{model_name}"


def online_queue(model_name: str) -> str:
    """Online requests (`POST /v1/score`, `/get_reward`, `/classify`) for one model: a Redis list the
    API pushes JSON requests onto and each worker's online lane pops between micro-batches
    (`worker/online.py`). Not a Celery queue: a chunk in hand would hold a Celery message back."""
    return f"{PREFIX}:online:{model_name}"


def online_inflight(tenant: str) -> str:
    """A tenant's online requests in flight across every API process (RMSCORE_MAX_ONLINE_PER_TENANT);
    it expires, so a crashed API process cannot hold a tenant's slots for ever."""
    return f"{PREFIX}:online:inflight:{tenant}"


def chunk_enqueued(chunk_id: int) -> str:
    """Set when a chunk's message is handed to the broker, deleted when a worker leases it.

    Lives in the broker's Redis, so a FLUSHALL or a restart without persistence wipes it together
    with the messages: a queued chunk without this key is one the broker no longer knows.
    """
    return f"{PREFIX}:chunk:{chunk_id}:enqueued"


def worker_heartbeat(worker_name: str) -> str:
    return f"{PREFIX}:worker:{worker_name}:heartbeat"


def model_last_seen(model_name: str) -> str:
    """When a live worker of the model last beat (Unix seconds, no expiry): how long a model has had
    no worker outlives the heartbeats themselves."""
    return f"{PREFIX}:model:{model_name}:last_seen"


SYNC_REPLY_PREFIX = f"{PREFIX}:sync:"


def sync_reply(request_id: str) -> str:
    """Where the worker pushes the reply to one online request (read once, then expires)."""
    return f"{SYNC_REPLY_PREFIX}{request_id}:reply"


WORKER_HEARTBEAT_PATTERN = f"{PREFIX}:worker:*:heartbeat"
RECONCILE_LOCK = f"{PREFIX}:reconcile:lock"
# Set (with an expiry of RMSCORE_CACHE_PRUNE_INTERVAL) by the reconciler that pruned the score cache
# last: the fleet prunes once per interval, not once per worker pass.
CACHE_PRUNE_GATE = f"{PREFIX}:cache:prune"
