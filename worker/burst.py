"""`rmscore worker --burst`: score what is there, then exit 0 (as arq's burst mode does).

For a batch node (a SLURM allocation, a spot GPU) that should free its device once the work
submitted for its model is done, and for tests that want a worker to drain a queue and stop.

"Done" is read from the database, not from the broker's queue: a Celery message can be in flight,
lost (the reconciler re-sends it) or already taken, while the chunk rows say what is left. The
worker stops when none of its model's chunks is queued or leased by any worker (a lease held
elsewhere may expire and come back) and it holds none itself, on two checks in a row.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import TYPE_CHECKING

from db.chunks import work_left

if TYPE_CHECKING:
    from worker.runner import WorkerRuntime

log = logging.getLogger(__name__)

CHECK_S = 2.0  # between two looks at the chunk table: a drained worker exits within ~2 checks


class Burst(threading.Thread):
    """Sends this process SIGTERM (Celery's warm shutdown: exit code 0, the usual clean-up) once
    there is nothing left for it to score. Started when Celery is ready, so its handler is in place."""

    def __init__(self, runtime: WorkerRuntime, check_s: float = CHECK_S) -> None:
        super().__init__(name="rmscore-burst", daemon=True)
        self.runtime = runtime
        self.check_s = check_s
        self.stopping = threading.Event()

    def drained(self) -> bool:
        rt = self.runtime
        return not rt.leases() and work_left(rt.db, rt.engine.name, rt.model_refs) == 0

    def run(self) -> None:
        empty_checks = 0
        while not self.stopping.wait(self.check_s):
            try:
                empty_checks = empty_checks + 1 if self.drained() else 0
            except Exception as exc:  # noqa: BLE001 - the database may be failing over: look again
                log.warning("burst: could not read what is left: %s", exc)
                empty_checks = 0
            if empty_checks >= 2:
                log.info("burst: no chunk of %s left to score; stopping", self.runtime.engine.name)
                os.kill(os.getpid(), signal.SIGTERM)
                return
