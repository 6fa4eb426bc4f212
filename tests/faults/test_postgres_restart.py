"""PostgreSQL restarted mid-job: workers retry their writes with backoff (db.session.retrying, a
pre-pinged pool); no result is lost and none is stored twice.

The server is the machine's shared one: the restart is `pg_ctlcluster … restart` (fast mode, about
a second down), once, while this test's own job is mid-way.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from faultkit import MODEL, FaultEnv
from testkit import wait_until

from worker.faults import CHUNK_DELAY_ENV

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def restart_postgresql() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def pg_up() -> bool:
    from testkit import pg_admin

    try:
        pg_admin("SELECT 1")
    except Exception:  # noqa: BLE001 - still starting
        return False
    return True


@pytest.mark.skipif(not os.path.isdir("/etc/postgresql"), reason="needs a local PostgreSQL cluster to restart")
def test_postgresql_restarted_mid_job(
    fault_env: Any, fault_input: Path, clean_reference: list[dict[str, Any]]
) -> None:
    env: FaultEnv = fault_env("postgresql")
    w = env.worker("pg", **{CHUNK_DELAY_ENV: "0.5"}).wait_ready(env.pipe.redis)
    job_id = env.pipe.submit(fault_input, model=MODEL, chunk_size=3)  # 10 chunks
    env.wait_progress(job_id, 6)
    restart_postgresql()
    wait_until(pg_up, 60, "PostgreSQL to accept connections")
    env.pipe.db.dispose()  # this test process' own pool: its connections died with the server
    env.pipe.wait(job_id, timeout=120)
    env.assert_invariant(job_id, clean_reference)
    assert w.alive()
