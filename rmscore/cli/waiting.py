"""Why a job is not moving: the CLI's side of `rmscore.liveness`.

`submit`, `status` and `submit --wait` name any of a job's models that no live worker serves, and
since when, in both modes: the backend's `unserved` (`rmscore.cli.backends`) asks the broker's
Redis directly, or the API's `/readyz` (its `models` section). A check that cannot run (broker or
API down) says nothing: the command's own work has succeeded, and its own errors speak for the
services.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape

err = Console(stderr=True)
CHECK_EVERY_S = 5.0


def models_of(summary: dict[str, Any]) -> list[str]:
    """A job's models from its summary (`job_summary` / `GET /v1/jobs/{id}`), its own first."""
    return list(summary.get("models") or [summary["model"]])


def waited(created_at: Any) -> str:
    """How long a job has existed, from its `created_at` (a naive-UTC datetime or an ISO string)."""
    from rmscore.liveness import ago

    if isinstance(created_at, str):
        created_at = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return ago((datetime.now(UTC) - created_at).total_seconds())


def warn(job_id: str, created_at: Any, problems: dict[str, str]) -> None:
    """Tell the user why the job waits, for how long it has, and how to give it a worker."""
    if not problems:
        return
    from rmscore.liveness import fix_hint
    from rmscore.settings import get_settings

    ids = get_settings().model_names  # the server's may differ in API mode; then the hint is generic
    for model, p in problems.items():
        err.print(
            escape(f"warning: job {job_id}, queued {waited(created_at)} ago: {p}; it waits until one runs"),
            style="yellow",
            highlight=False,
            soft_wrap=True,
        )
        err.print(escape(f"fix: {fix_hint(model, ids.get(model))}"), style="yellow", highlight=False, soft_wrap=True)


class Watch:
    """For a progress display: the first problem, re-checked at most every CHECK_EVERY_S seconds."""

    def __init__(self, check: Callable[[], dict[str, str]]) -> None:
        self.check = check
        self.at = 0.0
        self.problem = ""

    def status(self, job_status: str, terminal: bool) -> str:
        if terminal:
            return job_status
        if time.monotonic() - self.at >= CHECK_EVERY_S:
            self.at = time.monotonic()
            problems = self.check()
            self.problem = next(iter(problems.values()), "")
        return f"{job_status}: {self.problem}" if self.problem else job_status
