"""One Settings class, read from RMSCORE_* environment variables; bad config fails at start-up."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rmscore.vocabulary import ControlTokens, Overflow

if TYPE_CHECKING:
    from rmscore.formats import LineLimits

DEFAULT_MODEL = "NCSOFT/Llama-3-OffsetBias-RM-8B"


def data_dir() -> Path:
    """rmscore's per-user data directory (platformdirs: ~/.local/share/rmscore on Linux, honouring
    XDG_DATA_HOME). The default database lives here, so every folder a user works from sees the same
    jobs; a path relative to the current directory silently made a new, empty database in each."""
    from platformdirs import user_data_path

    return user_data_path("rmscore", appauthor=False)


def default_database_url() -> str:
    return f"sqlite:///{data_dir() / 'rmscore.db'}"


def model_name(model: str) -> str:
    """The short name a model is known by in queues, jobs and Flower: the last path part, slugged.

    `NCSOFT/Llama-3-OffsetBias-RM-8B` -> `llama-3-offsetbias-rm-8b`, `./models/tiny` -> `tiny`.
    """
    last = model.rstrip("/").rsplit("/", 1)[-1]
    slug = re.sub(r"[^a-z0-9._-]+", "-", last.lower()).strip("-.")
    if not slug:
        raise ValueError(f"cannot derive a model name from {model!r}")
    return slug


def model_ref(model: str) -> str:
    """What a chunk records of the model it must be scored with: a local directory as an absolute
    path, a hub id as given. Two directories with the same basename share a queue (`model_name`),
    so the worker compares this, never the name (worker/runner.py)."""
    path = os.path.expanduser(model)
    if os.path.isdir(path) or model.startswith(("/", "./", "../", "~")):
        return os.path.abspath(path)
    return model


def model_refs_served(model: str) -> set[str]:
    """Every `model_ref` a producer may have recorded for the model a worker loaded from `model`:
    as given, absolute, and with symlinks resolved (the producer may see the directory differently)."""
    refs = {model, model_ref(model)}
    path = os.path.expanduser(model)
    if os.path.isdir(path):
        refs.add(os.path.realpath(path))
    return refs


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RMSCORE_", env_file=".env", extra="ignore")

    # Model served by `rmscore worker` and used when a job names none.
    model: str = DEFAULT_MODEL
    # Extra models the operator allows jobs to name (ids or paths); `model` is always allowed.
    models: list[str] = Field(default_factory=list)
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_batch_tokens: int | None = Field(default=None, ge=16)
    max_batch_size: int = Field(default=256, ge=1)
    overflow: Overflow = "truncate"
    # Control-token strings (`<|eot_id|>` …) in content: "card" tokenizes them as control tokens,
    # exactly as the model card does; "neutralize" keeps them plain text (flagged on each result).
    # A job's options.control_tokens overrides it.
    control_tokens: ControlTokens = "card"
    # CPU only: micro-batches scored at once, each on its share of the cores. Default: one per torch
    # thread (OMP_NUM_THREADS). Several workers on one host: give each OMP_NUM_THREADS=cores/workers.
    lanes: int | None = Field(default=None, ge=1)

    # Default: one SQLite file in the per-user data directory (`data_dir()`), whatever the current folder.
    database_url: str = Field(default_factory=default_database_url)
    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str | None = None

    chunk_size: int = Field(default=256, ge=1)
    chunk_max_tokens: int = Field(default=262_144, ge=1)
    lease_seconds: int = Field(default=600, ge=5)
    max_attempts: int = Field(default=3, ge=1)
    reconcile_interval: float = Field(default=30.0, gt=0)
    heartbeat_interval: float = Field(default=5.0, gt=0)
    heartbeat_ttl: float = Field(default=30.0, gt=0)
    worker_metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # A worker prepares the next chunk and stores the last one while one is on the device
    # (worker/chunk_pipeline.py); False: one chunk at a time, start to end. Unset: on for a CUDA
    # device, off on a CPU, where the "device" is the same cores and the stages only contend for the
    # GIL (bench/queued.py measured 0.92x of one chunk at a time on the tiny model; README, Performance).
    worker_overlap: bool | None = None
    # The score cache (db/cache.py). `tenant`: a job only ever gets scores its own tenant's jobs
    # computed, so `cached: true` discloses nothing across tenants. `shared`: one cache for every
    # tenant (more hits; a tenant can then learn that someone already scored a text).
    cache_scope: Literal["tenant", "shared"] = "tenant"
    # Bounds, enforced by the reconciler (at most every `cache_prune_interval` seconds, fleet-wide):
    # rows older than this many seconds go (0: no age bound), then the oldest beyond the row count.
    cache_max_age: float = Field(default=30 * 86400.0, ge=0)
    cache_max_rows: int = Field(default=10_000_000, ge=0)
    cache_prune_interval: float = Field(default=300.0, gt=0)

    api_url: str | None = None
    api_key: str | None = None
    auth: Literal["enabled", "disabled"] = "enabled"
    # Bytes on the wire of one upload (compressed as sent).
    max_upload_bytes: int = Field(default=2 * 1024**3, ge=1)
    # Bytes one job's input may expand to: a file decompressed, Parquet rows decoded. A 1 MB .gz can
    # hold a gigabyte; this bounds what any upload costs the API, the disk and the database.
    max_job_bytes: int = Field(default=1024**3, ge=1024)
    # Seconds an upload or a JSON body may go without sending a byte before it is refused (408).
    upload_read_timeout: float = Field(default=30.0, gt=0)
    # Uploads one tenant may have in flight at once; more answer 429, so no tenant holds every slot.
    max_uploads_per_tenant: int = Field(default=2, ge=1)
    max_items_per_job: int = Field(default=5_000_000, ge=1)
    max_line_bytes: int = Field(default=1_000_000, ge=64)
    max_turns: int = Field(default=512, ge=1)
    max_responses: int = Field(default=64, ge=1)  # responses on one listwise line
    sync_max_items: int = Field(default=64, ge=1)
    sync_timeout: float = Field(default=60.0, gt=0)
    # Online requests (`POST /v1/score`, `/get_reward`, `/classify`) waiting for a model's workers
    # before new ones get 429 (0: no cap), and those one tenant may have waiting at once.
    max_sync_queue: int = Field(default=256, ge=0)
    max_online_per_tenant: int = Field(default=64, ge=0)
    # Seconds a worker's online lane waits for more requests before scoring the ones it holds, so
    # concurrent small requests share micro-batches (dynamic batching); 0 scores at once.
    online_window: float = Field(default=0.005, ge=0, le=1)
    # Back-pressure: lines accepted but not yet scored, overall and per tenant (0: no cap).
    max_queued_items: int = Field(default=0, ge=0)
    max_queued_items_per_tenant: int = Field(default=0, ge=0)
    # JSON request bodies (`POST /v1/jobs`, `/v1/score`) and `.json` documents, which are parsed
    # whole (JSONL files stream through `/v1/jobs/upload`). Also bounds what a body parses into.
    max_json_body_bytes: int = Field(default=8 * 1024**2, ge=1024)
    # A job's `metadata` is stored as given, so it is bounded.
    max_metadata_bytes: int = Field(default=16 * 1024, ge=2)
    # Browser origins allowed to call the API (JSON list); none, so CORS is off, by default.
    cors_origins: list[str] = Field(default_factory=list)
    # With auth disabled the API answers only these Host names (JSON list) besides 127.0.0.1,
    # localhost and [::1], any port: a DNS-rebound name never reaches it.
    allowed_hosts: list[str] = Field(default_factory=list)

    # Bearer token a Prometheus scrape may send for the API's /metrics (besides an admin API key,
    # which always works). Unset: only admin keys. /metrics counts every tenant's jobs, so it is
    # never public while auth is enabled.
    metrics_token: str | None = Field(default=None, min_length=16)

    flower_basic_auth: str | None = None

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, v: str) -> str:
        if not v.startswith(("sqlite", "postgresql")):
            raise ValueError("RMSCORE_DATABASE_URL must be sqlite:///… or postgresql+psycopg://…")
        return v

    @field_validator("broker_url")
    @classmethod
    def _redis_broker(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://")):
            raise ValueError("RMSCORE_BROKER_URL must be redis://… or rediss://…")
        return v

    @field_validator("flower_basic_auth")
    @classmethod
    def _user_password(cls, v: str | None) -> str | None:
        if v is not None and (":" not in v or v.startswith(":") or v.endswith(":")):
            raise ValueError("RMSCORE_FLOWER_BASIC_AUTH must be user:password")
        return v

    @model_validator(mode="after")
    def _names_unique(self) -> Settings:
        names = [model_name(m) for m in self.allowed_models]
        if len(set(names)) != len(names):
            raise ValueError(f"two configured models share a name: {names}")
        return self

    @property
    def allowed_models(self) -> list[str]:
        return [self.model, *[m for m in self.models if m != self.model]]

    @property
    def model_names(self) -> dict[str, str]:
        """Short name -> model id or path, for every model jobs may name."""
        return {model_name(m): m for m in self.allowed_models}

    @property
    def model_refs(self) -> dict[str, str]:
        """Short name -> `model_ref`, for every model jobs may name: what their chunks record."""
        return {name: model_ref(m) for name, m in self.model_names.items()}

    @property
    def line_limits(self) -> LineLimits:
        """What one input line may hold, as every reader takes it (`**settings.line_limits`)."""
        return {"max_line_bytes": self.max_line_bytes, "max_turns": self.max_turns, "max_responses": self.max_responses}

    @property
    def backend_url(self) -> str:
        return self.result_backend or self.broker_url


@lru_cache
def get_settings() -> Settings:
    return Settings()
