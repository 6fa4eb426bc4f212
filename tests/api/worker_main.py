"""`rmscore worker` for the API tests, with the sync-scoring task registered.

Until `worker.runner` registers `worker.sync_task` itself, this wraps `worker.tasks.register` so
the worker also serves `POST /v1/score`; once it does, this is plain `rmscore worker`.
"""

from __future__ import annotations

import inspect

import worker.runner
import worker.tasks
from worker import sync_task

if "sync_task" not in inspect.getsource(worker.runner):
    _register = worker.tasks.register

    def register(app, runtime):  # type: ignore[no-untyped-def]
        _register(app, runtime)
        sync_task.register(app, runtime)

    worker.tasks.register = register

from rmscore.cli import main  # noqa: E402

main()
