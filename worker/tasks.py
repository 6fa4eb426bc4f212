"""The Celery task a worker runs: score one chunk. Only `rmscore worker` registers it (it needs the model)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery import Celery
from celery.exceptions import Ignore

from rmscore import keys

if TYPE_CHECKING:
    from worker.runner import WorkerRuntime

_runtime: WorkerRuntime | None = None


def register(app: Celery, runtime: WorkerRuntime) -> None:
    """Bind the task to the runtime holding the loaded engine (one per process)."""
    global _runtime
    _runtime = runtime

    @app.task(name=keys.TASK_SCORE_CHUNK, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
    def score_chunk(job: str, chunk: int, items: int = 0) -> str:
        """Claim and prepare chunk `chunk` of job `job` (`items` items), then hand it to the device
        (worker/chunk_pipeline.py: scored and stored behind the next one's preparation). Returns the outcome."""
        assert _runtime is not None
        outcome = _runtime.middleware.stage(_runtime.process, chunk)  # the prepare stage (worker/middleware.py)
        if outcome == "cancelled":
            # Flower shows the task REVOKED (what a cancelled task is), not SUCCESS: nothing was scored.
            # Ignore then ends it with no success or failure event (logged at INFO, no traceback) and
            # acknowledges the message: the job is over, there is nothing to run again.
            score_chunk.send_event("task-revoked", terminated=False, expired=False, signum=None)
            raise Ignore(f"chunk {chunk} of job {job} was not run: the job was cancelled")
        return outcome
