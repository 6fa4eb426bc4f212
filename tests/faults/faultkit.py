"""Helpers of the fault suite (fixtures in conftest.py): one private Redis + database per test."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import RedisServer, WorkerProc, start_api, stop_proc
from pipeline.pipekit import FAST_RECOVERY, Pipeline, make_pipeline
from testkit import wait_until

N_PAIRS = 30
POISON_ID = "poison-me"
POISON_LINE = 14
MODEL = "tiny"
# What FaultEnv sets to make recovery quick (pipekit.FAST_RECOVERY), and every setting that times recovery.
FAST_TIMINGS = tuple(FAST_RECOVERY)
TIMING_SETTINGS = (*FAST_TIMINGS, "RMSCORE_HEARTBEAT_TTL", "RMSCORE_MAX_ATTEMPTS")


@dataclass
class FaultEnv:
    """A Pipeline (tests/pipeline/pipekit.py) whose broker is a Redis this test may kill."""

    pipe: Pipeline
    redis_server: RedisServer
    start_worker: Callable[..., WorkerProc]
    apis: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        backend: str,
        db_url: str,
        server: RedisServer,
        model_dir: Path,
        tmp: Path,
        start_worker: Callable[..., WorkerProc],
        **extra: str,
    ) -> FaultEnv:
        import redis

        client = redis.Redis.from_url(server.url, socket_timeout=5)
        env = {"RMSCORE_AUTH": "disabled", **extra}
        pipe = make_pipeline(backend, db_url, server.url, client, tmp, model_dir, model_dir, **env)
        return cls(pipe, server, start_worker)

    def with_default_timings(self) -> FaultEnv:
        """Drop this suite's fast lease/reconcile/heartbeat settings: workers then run what users run."""
        from rmscore.settings import Settings

        for var in FAST_TIMINGS:
            self.pipe.env.pop(var, None)
        assert not [k for k in self.pipe.env if k in TIMING_SETTINGS], "a timing setting is still overridden"
        p = self.pipe
        p.settings = Settings(database_url=p.db_url, broker_url=p.broker_url, model=str(p.model_dir), _env_file=None)
        return self

    def worker(self, name: str, **extra: str) -> WorkerProc:
        w = self.start_worker({**self.pipe.env, **extra}, f"{MODEL}@{name}", ["--model", str(self.pipe.model_dir)])
        return w

    def api(self, **extra: str) -> str:
        n = len(self.apis)
        url, proc = start_api({**self.pipe.env, **extra}, self.pipe.tmp / f"api-{n}.log")
        self.apis.append(proc)
        return url

    def api_log(self, n: int = 0) -> str:
        return (self.pipe.tmp / f"api-{n}.log").read_text(errors="replace")

    def close(self) -> None:
        for p in self.apis:
            stop_proc(p)
        self.redis_server.kill()

    # ------------------------------------------------------------------ observations

    def leased_by(self, job_id: str, worker: WorkerProc) -> Any:
        for c in self.pipe.chunks(job_id):
            if c.status == "leased" and (c.lease_owner or "").startswith(worker.name + "/"):
                return c
        return None

    def wait_leased(self, job_id: str, worker: WorkerProc, timeout: float = 90) -> Any:
        def held() -> Any:
            if not worker.alive():
                raise AssertionError(f"worker {worker.name} exited:\n{worker.output()[-3000:]}")
            return self.leased_by(job_id, worker)

        return wait_until(held, timeout, f"{worker.name} to hold a chunk of job {job_id}")

    def wait_progress(self, job_id: str, items: int, timeout: float = 90) -> None:
        wait_until(lambda: self.pipe.job(job_id).completed >= items, timeout, f"{items} items of job {job_id} done")

    def assert_invariant(self, job_id: str, reference: list[dict[str, Any]]) -> None:
        """completed + failed == total, one result row per item, records equal the clean run's."""
        self.pipe.assert_exactly_once(job_id, reference)

    def assert_counts_add_up(self, job_id: str) -> Any:
        job = self.pipe.job(job_id)
        assert job.status == "completed", job
        assert job.completed + job.failed == job.total
        assert self.pipe.result_rows(job_id) == job.total
        return job


def poisoned(reference: list[dict[str, Any]], line: int) -> list[dict[str, Any]]:
    """The clean reference with `line` as a scoring failure (record shape only: its message is checked apart)."""
    out = []
    for r in reference:
        if r["line"] == line:
            r = {"line": line, "custom_id": r["custom_id"], "error": None, "subset": r.get("subset")}
        out.append(r)
    return out


def sleep_while(seconds: float, check: Callable[[], None], every: float = 1.0) -> None:
    """Sleep `seconds`, calling `check` every `every` seconds (to assert things while a fault lasts)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        check()
        time.sleep(min(every, max(0.0, end - time.monotonic())))


__all__ = ["FaultEnv", "poisoned", "sleep_while"]
