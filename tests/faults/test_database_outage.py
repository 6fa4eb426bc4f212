"""The database goes down while a chunk is on its last attempt (a private PostgreSQL this test stops
and starts; DEFAULT lease, reconcile and heartbeat settings). An outage is the infrastructure's fault,
never the items': the chunk is given back without using up an attempt (once the database answers
again: the worker waits it out with the lease in hand), and every line ends scored, none as
`scoring_failed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from faultkit import MODEL, FaultEnv
from harness import PG_BIN, PostgresServer, RedisServer
from sqlalchemy import update
from testkit import wait_until

from db.models import chunks
from db.session import writing
from worker.faults import CHUNK_DELAY_ENV

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def private_pgs() -> Iterator[Callable[[], PostgresServer]]:
    """Factory: a private PostgreSQL server per call, destroyed after the test."""
    if PG_BIN is None:
        pytest.skip("needs PostgreSQL's server binaries (initdb, pg_ctl)")
    made: list[PostgresServer] = []

    def make() -> PostgresServer:
        made.append(PostgresServer().init().start())
        return made[-1]

    try:
        yield make
    finally:
        for server in made:
            server.destroy()


# 0: back within the worker's own database retries; 20: longer than those (~6-12 s), waited out.
DOWN_S = (0, 20)


def test_a_database_outage_on_the_last_attempt_fails_no_healthy_item(
    private_pgs: Callable[[], PostgresServer],
    tmp_path: Path,
    tiny_model_dir: Path,
    start_worker: Any,
    fault_input: Path,
    clean_reference: list[dict[str, Any]],
) -> None:
    # Both outages at once, each on its own PostgreSQL, Redis and worker: the 20 s one and the
    # default-timed recovery after each are waited out together instead of one after the other.
    servers: dict[float, PostgresServer] = {}
    envs: dict[float, FaultEnv] = {}
    try:
        for down_s in DOWN_S:  # set up one after the other (alembic's migration context is process-global)
            tmp = tmp_path / f"down-{down_s}"
            tmp.mkdir()
            pg = private_pgs()
            redis_server = RedisServer(tmp / "redis.log").start()
            env = FaultEnv.create("postgresql", pg.url, redis_server, tiny_model_dir, tmp, start_worker)
            envs[down_s] = env.with_default_timings()
            servers[down_s] = pg
        with ThreadPoolExecutor(len(DOWN_S)) as pool:
            runs = [pool.submit(outage, d, servers[d], envs[d], fault_input, clean_reference) for d in DOWN_S]
            for run in runs:
                run.result()
    finally:
        for env in envs.values():
            env.close()


def outage(
    down_s: float,
    private_pg: PostgresServer,
    env: FaultEnv,
    fault_input: Path,
    clean_reference: list[dict[str, Any]],
) -> None:
    job_id = env.pipe.submit(fault_input, model=MODEL, chunk_size=10)  # 3 chunks, no worker yet
    last = env.pipe.settings.max_attempts
    with writing(env.pipe.db) as conn:  # as if each chunk had failed twice already
        conn.execute(update(chunks).where(chunks.c.job_id == job_id).values(attempts=last - 1))
    # The delay after each claim lets the test take the database away while a chunk is in hand.
    w = env.worker(f"outage-{down_s}", **{CHUNK_DELAY_ENV: "4"}).wait_ready(env.pipe.redis)
    held = env.wait_leased(job_id, w)
    assert held.attempts == last
    private_pg.stop()
    # The worker wakes, cannot load the chunk's items, and tries to give the chunk back.
    wait_until(lambda: "OperationalError" in w.output(), 60, f"the worker to meet the {down_s} s outage", 0.2)
    time.sleep(down_s)
    private_pg.start()
    env.pipe.db.dispose()  # this process' pooled connections died with the server

    job = env.pipe.wait(job_id, timeout=120)
    errors = [r for r in env.pipe.records(job_id) if "error" in r]
    assert errors == [], (down_s, errors[:3])
    env.assert_invariant(job_id, clean_reference)  # every line scored once, equal to a clean run
    assert job.failed == 0, down_s
    assert all(c.attempts <= last for c in env.pipe.chunks(job_id))
    assert w.alive()
