"""The Celery task a worker runs: score one chunk. Only `rmscore worker` registers it (it needs the model)."""

from __future__ import annotations

import atexit
import cProfile
import os
from typing import TYPE_CHECKING

from celery import Celery

from rmscore import keys

if TYPE_CHECKING:
    from worker.runner import WorkerRuntime

_runtime: WorkerRuntime | None = None
# RMSCORE_PROFILE=PATH: cProfile every chunk this process runs and write the stats to PATH at exit
# (bench/system.py --profile reads it). Off by default: profiling slows the hot path.
_profile_path = os.environ.get("RMSCORE_PROFILE")
_profiler = cProfile.Profile() if _profile_path else None
if _profiler is not None:
    atexit.register(lambda: _profiler.dump_stats(_profile_path))


def register(app: Celery, runtime: WorkerRuntime) -> None:
    """Bind the task to the runtime holding the loaded engine (one per process)."""
    global _runtime
    _runtime = runtime

    @app.task(name=keys.TASK_SCORE_CHUNK, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
    def score_chunk(job: str, chunk: int, items: int = 0) -> str:
        """Claim, score and store chunk `chunk` of job `job` (`items` items). Returns the outcome."""
        assert _runtime is not None
        if _profiler is None:
            return _runtime.process(chunk)
        return _profiler.runcall(_runtime.process, chunk)
