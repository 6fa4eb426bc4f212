"""Does a live worker serve a model, and since when has none? For submit, status and /readyz.

A job naming a model no worker serves used to sit "queued" with no hint. Workers' heartbeats
(`keys.worker_heartbeat`, expiring after RMSCORE_HEARTBEAT_TTL) say who is alive now; each beat
also stamps `keys.model_last_seen`, which does not expire, so "no worker for 10 minutes" and
"never had one" can be told apart. Only Redis is read; no torch, db or api imports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rmscore import keys

if TYPE_CHECKING:
    import redis


@dataclass(frozen=True)
class ModelLiveness:
    model: str  # the model's short name (queues, jobs)
    live: int  # workers with a live heartbeat
    last_seen: float | None  # Unix time of the last beat of any of its workers; None: never

    def idle_seconds(self, now: float | None = None) -> float | None:
        """Seconds since a worker of the model last beat; None if none ever did."""
        return None if self.last_seen is None else max(0.0, (now or time.time()) - self.last_seen)

    def problem(self, now: float | None = None) -> str | None:
        """None while a worker serves the model; else one sentence saying since when none has."""
        if self.live:
            return None
        idle = self.idle_seconds(now)
        since = "no worker has ever served it" if idle is None else f"the last one was seen {ago(idle)} ago"
        return f"no live worker serves model {self.model} ({since})"

    def to_dict(self) -> dict[str, Any]:
        return {"live": self.live, "last_seen": self.last_seen, "problem": self.problem()}


def ago(seconds: float) -> str:
    """A duration as people say it: 45 s, 12 min, 3.5 h, 2.0 days."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def model_liveness(r: redis.Redis, model: str) -> ModelLiveness:
    """Live workers of `model` (short name) and when one last beat, from the broker's Redis `r`."""
    live = sum(1 for _ in r.scan_iter(match=keys.worker_heartbeat(f"{model}@*"), count=1000))
    raw = r.get(keys.model_last_seen(model))
    return ModelLiveness(model, live, float(raw) if raw is not None else None)


def fix_hint(model: str, model_id: str | None = None) -> str:
    """How to give `model` a worker; `model_id` (its directory or hub id) when known."""
    target = model_id or f"<directory or id of {model}>"
    return f"start one: `rmscore worker --model {target}` (`rmscore up` starts one per configured model)"
