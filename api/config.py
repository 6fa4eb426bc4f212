"""API limits, derived from `rmscore.settings.Settings` (the one place settings are read)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rmscore.settings import Settings, get_settings


@dataclass(frozen=True)
class ApiConfig:
    # Back-pressure: lines accepted but not yet scored (queued and running jobs), per tenant and
    # overall. Beyond it, submissions answer 429 with Retry-After. None: no cap.
    max_queued_items: int | None = None
    max_queued_items_per_tenant: int | None = None
    # Online requests (`/v1/score`, `/get_reward`, `/classify`) waiting for a model before new ones get 429.
    max_sync_queue: int | None = 256
    max_json_body_bytes: int = 8 * 1024**2
    max_metadata_bytes: int = 16 * 1024
    max_metadata_depth: int = 8
    # Browser origins allowed to call the API; none (CORS off) by default.
    cors_origins: list[str] = field(default_factory=list)
    # Seconds a verified API key stays cached in the process (a revoked key works at most this long).
    key_cache_seconds: float = 30.0

    @classmethod
    def from_settings(cls, s: Settings) -> ApiConfig:
        return cls(
            max_queued_items=s.max_queued_items or None,
            max_queued_items_per_tenant=s.max_queued_items_per_tenant or None,
            max_sync_queue=s.max_sync_queue or None,
            max_json_body_bytes=s.max_json_body_bytes,
            max_metadata_bytes=s.max_metadata_bytes,
            cors_origins=list(s.cors_origins),
        )


def get_api_config() -> ApiConfig:
    return ApiConfig.from_settings(get_settings())
