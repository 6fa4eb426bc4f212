"""API-only settings not (yet) in `rmscore.settings.Settings`: read from the environment in one place.

Each is an `RMSCORE_*` variable with the default shown, so moving them into `Settings` later is a
copy of these lines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value or None  # 0 means "no cap"


def _list(name: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]


@dataclass(frozen=True)
class ApiConfig:
    # Back-pressure: lines accepted but not yet scored (queued and running jobs), per tenant and
    # overall. Beyond it, submissions answer 429 with Retry-After. None: no cap.
    max_queued_items: int | None = field(default_factory=lambda: _int("RMSCORE_MAX_QUEUED_ITEMS", None))
    max_queued_items_per_tenant: int | None = field(
        default_factory=lambda: _int("RMSCORE_MAX_QUEUED_ITEMS_PER_TENANT", None)
    )
    # `POST /v1/score` requests waiting in a model's sync queue before new ones get 429.
    max_sync_queue: int | None = field(default_factory=lambda: _int("RMSCORE_MAX_SYNC_QUEUE", 256))
    # JSON request bodies (`POST /v1/jobs`, `/v1/score`); files go through `/v1/jobs/upload`.
    max_json_body_bytes: int = field(
        default_factory=lambda: _int("RMSCORE_MAX_JSON_BODY_BYTES", 64 * 1024**2) or 64 * 1024**2
    )
    # A job's `metadata`: stored as given, so bounded in size and nesting.
    max_metadata_bytes: int = field(default_factory=lambda: _int("RMSCORE_MAX_METADATA_BYTES", 16 * 1024) or 16 * 1024)
    max_metadata_depth: int = 8
    # Browser origins allowed to call the API; none (CORS off) by default.
    cors_origins: list[str] = field(default_factory=lambda: _list("RMSCORE_CORS_ORIGINS"))
    # Seconds a verified API key stays cached in the process (a revoked key works at most this long).
    key_cache_seconds: float = 30.0


def get_api_config() -> ApiConfig:
    return ApiConfig()
