"""Producers, the API's store and the Celery app never load torch: only `rmscore worker` holds a model."""

from __future__ import annotations

import subprocess
import sys

from testkit import REPO, clean_env


def test_producer_side_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "import db.chunks, db.jobs, db.migrate, db.producer, db.results, rmscore.broker, worker.reconcile\n"
        "import api.state, api.submission, rmscore.cli.jobs, rmscore.cli.serve_worker\n"
        "rmscore.broker.get_app()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=clean_env(), cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
