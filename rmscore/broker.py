"""The broker, as every process sees it: the Celery app configured from settings, and the Redis client.

In the shared core (not in `worker/`) because the producers (the API, `rmscore submit`, the
reconciler) send tasks with the app by name and never need the model: importing this never imports
torch, and the API image ships without `worker/`. Only `rmscore worker` registers the task that
needs the model, on an app made here.

`celery -A rmscore.broker flower` (and any other `celery -A rmscore.broker …`) finds the configured app here.
"""

from __future__ import annotations

import threading
from typing import Any

import redis
from celery import Celery

from rmscore import keys
from rmscore.settings import Settings, get_settings

# Redis re-delivers an unacknowledged message after the visibility timeout; our own lease does the
# same job faster (the reconciler), so the broker's must never fire first: lease + this margin.
VISIBILITY_MARGIN_S = 600

_apps: dict[str, Celery] = {}
_lock = threading.Lock()
_redis: dict[str, redis.Redis] = {}


def create_app(settings: Settings | None = None) -> Celery:
    """A new Celery app for these settings (JSON only, late acks, one message in hand at a time)."""
    s = settings or get_settings()
    # The result backend only serves tasks that ask for results (chunk results go to the database).
    app = Celery("rmscore", broker=s.broker_url, backend=s.backend_url, set_as_current=False)
    app.conf.update(
        # JSON only: a pickle message is refused, never unpickled.
        accept_content=["json"],
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        result_accept_content=["json"],
        task_ignore_result=True,  # results live in the database, not in a result backend
        # A chunk is acknowledged after it is stored; a worker that dies leaves the message to be
        # redelivered (and the lease in the database to expire).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": s.lease_seconds + VISIBILITY_MARGIN_S},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker outlives a Redis restart
        # Flower shows tasks as they are sent, started and finished.
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_default_queue=keys.score_queue(_default_model_name(s)),
        task_create_missing_queues=True,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_pool_limit=10,
    )
    return app


def _default_model_name(s: Settings) -> str:
    from rmscore.settings import model_name

    return model_name(s.model)


def get_app(settings: Settings | None = None) -> Celery:
    """The process-wide app for `settings` (default: the configured ones), created once per broker URL."""
    s = settings or get_settings()
    with _lock:
        app = _apps.get(s.broker_url)
        if app is None:
            app = _apps[s.broker_url] = create_app(s)
        return app


def get_redis(url: str | None = None) -> redis.Redis:
    """A client for the broker's Redis (where the `rmscore:*` keys live beside Celery's)."""
    url = url or get_settings().broker_url
    client = _redis.get(url)
    if client is None:
        client = _redis[url] = redis.Redis.from_url(
            url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30, retry_on_timeout=True
        )
    return client


def __getattr__(name: str) -> Any:
    # `celery -A rmscore.broker` looks for `app` (or `celery`): build it only when asked.
    if name in ("app", "celery"):
        return get_app()
    raise AttributeError(name)
