"""Helpers of the pipeline suite; its fixtures, and what they set up, are described in conftest.py."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import migrated, service_env
from sqlalchemy import Engine, func, select
from testkit import assert_records_equal, wait_until

HH_PAIRS = 500
LEASE_SECONDS = 5
FAULTS_MODEL = "tiny-faults"
# Short leases, a reconciler and a heartbeat every second: recovery tests are quick.
FAST_RECOVERY = {
    "RMSCORE_LEASE_SECONDS": str(LEASE_SECONDS),
    "RMSCORE_RECONCILE_INTERVAL": "1",
    "RMSCORE_HEARTBEAT_INTERVAL": "1",
}


@dataclass
class Pipeline:
    backend: str
    db_url: str
    broker_url: str
    env: dict[str, str]
    settings: Any
    db: Engine
    redis: Any
    tmp: Path
    model_dir: Path
    faults_model_dir: Path

    def submit(self, source: Any, *, model: str = "tiny", chunk_size: int = 25, **kw: Any) -> str:
        from db.producer import submit

        return submit(source, model=model, chunk_size=chunk_size, settings=self.settings, db=self.db, **kw).job.id

    def job(self, job_id: str) -> Any:
        from db.jobs import get_job

        return get_job(self.db, job_id)

    def wait(
        self, job_id: str, until: tuple[str, ...] = ("completed", "failed", "cancelled"), timeout: float = 180
    ) -> Any:
        return wait_until(
            lambda: (j := self.job(job_id)).status in until and j, timeout, f"job {job_id} to be {'/'.join(until)}", 0.2
        )

    def records(self, job_id: str) -> list[dict[str, Any]]:
        from db.results import iter_results

        return list(iter_results(self.db, job_id))

    def chunks(self, job_id: str) -> list[Any]:
        from db.models import chunks
        from db.session import reading

        with reading(self.db) as conn:
            return conn.execute(select(chunks).where(chunks.c.job_id == job_id).order_by(chunks.c.id)).all()

    def result_rows(self, job_id: str) -> int:
        from db.models import results
        from db.session import reading

        with reading(self.db) as conn:
            q = select(func.count()).select_from(results).where(results.c.job_id == job_id)
            return int(conn.execute(q).scalar_one())

    def assert_exactly_once(self, job_id: str, reference: list[dict[str, Any]]) -> None:
        """Completed; one result row per line; counts add up; every record equals the reference."""
        job = self.job(job_id)
        assert job.status == "completed", job
        assert job.total == len(reference)
        # The counters advance once per stored chunk: a chunk stored twice would overshoot them.
        assert job.completed + job.failed == job.total
        assert job.failed == sum("error" in r for r in reference)
        assert self.result_rows(job_id) == job.total
        assert all(c.status == "done" for c in self.chunks(job_id))
        assert_records_equal(self.records(job_id), reference)

    def worker_env(self, **extra: str) -> dict[str, str]:
        return {**self.env, **extra}


def make_pipeline(
    backend: str,
    db_url: str,
    broker_url: str,
    redis_client: Any,
    tmp: Path,
    model_dir: Path,
    faults_model_dir: Path,
    *,
    models: Sequence[Path] = (),
    **extra: str,
) -> Pipeline:
    """A Pipeline on a migrated database: its processes' environment (`service_env` with FAST_RECOVERY,
    `models` as RMSCORE_MODELS, `extra` last) and this process' Settings to match."""
    from rmscore.settings import Settings

    if models:
        extra = {"RMSCORE_MODELS": json.dumps([str(m) for m in models]), **extra}
    env = service_env(db_url, broker_url, model_dir, **{**FAST_RECOVERY, **extra})
    settings = Settings(
        database_url=db_url,
        broker_url=broker_url,
        model=str(model_dir),
        models=[str(m) for m in models],
        lease_seconds=LEASE_SECONDS,
        reconcile_interval=1,
        max_attempts=int(extra.get("RMSCORE_MAX_ATTEMPTS", 3)),
        _env_file=None,
    )
    db = migrated(db_url)
    return Pipeline(backend, db_url, broker_url, env, settings, db, redis_client, tmp, model_dir, faults_model_dir)
