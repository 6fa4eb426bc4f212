"""Helpers of the pipeline suite; its fixtures, and what they set up, are described in conftest.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from testkit import assert_records_equal, wait_until

HH_PAIRS = 500
LEASE_SECONDS = 5
FAULTS_MODEL = "tiny-faults"


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
