"""Producers, the API's store and the Celery app never load torch: only `rmscore worker` holds a model."""

from __future__ import annotations

import subprocess
import sys

from testkit import REPO, clean_env


def test_producer_side_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "import db.chunks, db.jobs, db.migrate, db.results, worker.app, worker.enqueue, worker.reconcile\n"
        "import rmscore.cli.jobs, rmscore.cli.serve_worker\n"
        "worker.app.get_app()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=clean_env(), cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
