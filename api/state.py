"""What one API process holds: settings, the database engine, broker clients, key cache, metrics."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from api.auth import KeyCache
from api.config import ApiConfig
from rmscore.settings import Settings, model_name

if TYPE_CHECKING:
    # Named for the checker only: the clients are made on first use, so importing this module (every
    # route does) never loads Celery or redis-py's asyncio client.
    import redis
    import redis.asyncio as aioredis
    from celery import Celery

    from api.metrics import Metrics


@dataclass
class ApiState:
    settings: Settings
    config: ApiConfig
    db: Engine
    key_cache: KeyCache
    # Set by api.main.create_app right after the state is made (Metrics reads the state it reports on).
    metrics: Metrics = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _celery: Celery | None = None
    _redis: redis.Redis | None = None
    _aioredis: aioredis.Redis | None = None

    @property
    def default_model(self) -> str:
        return model_name(self.settings.model)

    @property
    def celery(self) -> Celery:
        """The Celery app (sending only; no task is registered here)."""
        with self._lock:
            if self._celery is None:
                from rmscore.broker import get_app

                self._celery = get_app(self.settings)
            return self._celery

    @property
    def redis(self) -> redis.Redis:
        """A synchronous client for the broker's Redis (queue depths, heartbeats)."""
        with self._lock:
            if self._redis is None:
                from rmscore.broker import get_redis

                self._redis = get_redis(self.settings.broker_url)
            return self._redis

    @property
    def aioredis(self) -> aioredis.Redis:
        """An asyncio client for the broker's Redis (waiting on synchronous scoring replies)."""
        with self._lock:
            if self._aioredis is None:
                import redis.asyncio as aioredis

                # The socket timeout outlasts one BLPOP slice of api.online (without it, redis-py
                # used the 5 s connect timeout, and a longer wait died as a "broker outage").
                self._aioredis = aioredis.Redis.from_url(
                    self.settings.broker_url, socket_connect_timeout=5, socket_timeout=15, health_check_interval=30
                )
            return self._aioredis
