"""Online scoring, shared by every face that answers with scores now (`POST /v1/score`, `/get_reward`,
`/classify`): parse the items, hand them to a worker's online lane, wait for the reply.

The request is one JSON object pushed onto the model's Redis list (`keys.online_queue`); a worker's
online lane (`worker/online.py`) scores it between micro-batches of whatever batch work it holds
and pushes the reply onto a per-request key, which this waits on with BLPOP in short slices (one
long BLPOP died on the client's socket timeout, which was then reported as a broker outage).

Outcomes: 429 past the model's queue cap or the tenant's in-flight cap; 503 `no_worker` when no
live worker serves the model (before sending, and when the wait ends with none left);
503 `broker_unavailable` only when Redis itself fails; 504 `timeout` when live workers did not
answer within RMSCORE_SYNC_TIMEOUT (the request is then withdrawn, so no worker scores it later).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, cast

import anyio

from db.jobs import check_options, resolve_model
from rmscore import failure_messages, formats, keys
from rmscore.errors import Overloaded, RmscoreError, ScoringFailed, Timeout, TooLarge, Unavailable

if TYPE_CHECKING:
    from api.state import ApiState

log = logging.getLogger("api")
# Each BLPOP waits at most this long, under the client's socket timeout (api/state.py).
WAIT_SLICE_S = 2.0
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def parse(
    items: list[Any], state: ApiState, keep: list[formats.Parsed] | None = None
) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """(error records by line, items to score in the worker's wire form), past the item-count limit.
    Each item is any kind, text included (`formats.TextItem`), with the same checks as a file's line.
    `keep`: gets every parsed line too (`store: true` stores them as the job's items)."""
    settings = state.settings
    if len(items) > settings.sync_max_items:
        raise TooLarge(
            f"at most {settings.sync_max_items} items per request (RMSCORE_SYNC_MAX_ITEMS); send several "
            "requests, or submit a job",
            code="too_many_items",
        )
    errors: dict[int, dict[str, Any]] = {}
    todo: list[dict[str, Any]] = []
    parsed = formats.iter_objects(
        items, None, max_line_bytes=settings.max_line_bytes, max_turns=settings.max_turns, text_ok=True
    )
    for p in parsed:
        if keep is not None:
            keep.append(p)
        if isinstance(p, formats.LineError):
            errors[p.line] = formats.error_record(p.line, p.custom_id, p.code, p.message, p.subset)
        else:
            subset = getattr(p, "subset", None)
            todo.append(
                {"kind": p.kind, "line": p.line, "custom_id": p.custom_id, "subset": subset, "payload": p.payload()}
            )
    return errors, todo


async def score(
    state: ApiState, tenant: str, model: str | None, todo: list[dict[str, Any]], options: dict[str, Any] | None
) -> tuple[str, dict[str, Any] | None]:
    """Score `todo` online: (the model's short name, the worker's reply or None when nothing to score).
    The reply holds `records` (one per item, in order), `model_identity` and `worker`."""
    short = resolve_model(model, state.settings)
    opts = check_options(options)
    if not todo:
        return short, None
    reply_to = keys.sync_reply(uuid.uuid4().hex)
    timeout = state.settings.sync_timeout
    now = time.time()
    request = {
        "reply_to": reply_to,
        "items": todo,
        "overflow": opts.get("overflow"),
        "control_tokens": opts.get("control_tokens"),
        "sent_at": now,
        "deadline": now + timeout,
    }
    blob = json.dumps(request)
    slot = await _call(_send, state, short, tenant, blob)
    try:
        got = await _wait(state, reply_to, timeout)
        if got is None:
            await _call(_withdraw, state, short, blob)
            if not await _call(_live_workers, state, short):
                raise Unavailable(f"no live worker serves {short}", code="no_worker", retry_after=10)
            raise Timeout(
                f"not scored within {timeout:g}s (RMSCORE_SYNC_TIMEOUT); the workers are busy", code="timeout"
            )
    finally:
        if slot:
            await _call(_release, state, tenant)
    reply: dict[str, Any] = json.loads(got)
    if "error" in reply:
        # The worker's message is exception text (hosts, paths, SQL): the log gets it, the tenant a
        # fixed message (rmscore/failure_messages.py).
        log.warning("online scoring failed on a worker: %s", reply["error"].get("message"))
        raise ScoringFailed(failure_messages.request_failed(), code="scoring_failed")
    return short, reply


async def _call(fn: Callable[[*Ts], T], *args: *Ts) -> T:
    """`fn(*args)` on a thread (the synchronous Redis client), Redis failures as 503 broker_unavailable."""
    try:
        return await anyio.to_thread.run_sync(fn, *args)
    except RmscoreError:
        raise
    except Exception as e:  # noqa: BLE001 - kombu's and redis' own connection errors all mean the broker
        raise Unavailable(f"the broker is unavailable ({type(e).__name__})", code="broker_unavailable") from e


async def _wait(state: ApiState, reply_to: str, timeout: float) -> bytes | None:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            # BLPOP takes whole or fractional seconds; 0 would mean "for ever".
            got = await state.aioredis.blpop([reply_to], timeout=max(0.01, min(WAIT_SLICE_S, left)))
        except Exception as e:  # noqa: BLE001 - the broker went away while we waited
            raise Unavailable(f"lost the broker while waiting: {type(e).__name__}", code="broker_unavailable") from e
        if got is not None:
            # The client leaves replies undecoded (api/state.py): the value is the bytes the worker pushed.
            return bytes(cast("bytes", got[1]))


def _live_workers(state: ApiState, model: str) -> bool:
    return any(state.redis.scan_iter(match=keys.worker_heartbeat(f"{model}@*"), count=1000))


def _send(state: ApiState, model: str, tenant: str, blob: str) -> bool:
    """Queue the request: 429 past the model's cap or the tenant's, 503 with no live worker. True if a
    tenant slot was taken (to release after)."""
    r = state.redis
    cap = state.config.max_sync_queue
    queue = keys.online_queue(model)
    if cap is not None and r.llen(queue) >= cap:
        raise Overloaded(f"{cap} online requests are already waiting for {model}", retry_after=5)
    if not _live_workers(state, model):
        raise Unavailable(f"no live worker serves {model}", code="no_worker", retry_after=10)
    per_tenant = state.settings.max_online_per_tenant
    if per_tenant:
        key = keys.online_inflight(tenant)
        with r.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, int(state.settings.sync_timeout) + 30)
            n, _ = pipe.execute()
        if n > per_tenant:
            r.decr(key)
            raise Overloaded(
                f"you have {per_tenant} online requests in flight (RMSCORE_MAX_ONLINE_PER_TENANT)", retry_after=1
            )
    try:
        r.rpush(queue, blob)
    except Exception:
        if per_tenant:
            _release(state, tenant)
        raise
    return bool(per_tenant)


def _withdraw(state: ApiState, model: str, blob: str) -> None:
    """Take a timed-out request off the list (a worker would drop it anyway; it frees the cap now)."""
    state.redis.lrem(keys.online_queue(model), 1, blob)


def _release(state: ApiState, tenant: str) -> None:
    try:
        state.redis.decr(keys.online_inflight(tenant))
    except Exception as exc:  # noqa: BLE001 - the counter expires by itself; the answer stands
        log.warning("could not release an online slot of %s: %s", tenant, type(exc).__name__)
