"""Helpers and the `fleet` fixture of the monitoring tests: a real `rmscore worker` under its
default name (`tiny@<host>-cpu`) with a metrics port, a real `rmscore api` and a real `rmscore
flower` with basic auth, on Redis db 12 and a fresh SQLite file. One job of HH-RLHF pairs is scored
before the tests look at what they report.

Two more model names point at the tiny model: `tiny-idle` (no worker: its queue depth is what the
API must report) and `tiny-check` (a worker the heartbeat test kills).
"""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import WorkerProc, free_port, launch, migrated, service_env, stop_all, wait_http
from testkit import REDIS_URL, wait_until

REDIS_DB = 12
FLOWER_USER, FLOWER_PASSWORD = "monitor", "s3cret-flower"
# Bearer token Prometheus sends to the API's /metrics (RMSCORE_METRICS_TOKEN).
METRICS_TOKEN = "monitoring-scrape-token"
JOB_PAIRS = 20
CHUNK_SIZE = 6  # 20 pairs -> 4 chunks
IDLE_CHUNKS = 3


@dataclass
class Fleet:
    env: dict[str, str]
    settings: Any
    redis: Any
    tmp: Path
    model_dir: Path
    check_model_dir: Path
    worker: WorkerProc
    worker_metrics_url: str
    api_url: str
    flower_url: str
    job_id: str
    job_items: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # Conversations online requests sent to the fleet's worker (they count in its scored total).
    online_conversations: int = 0

    def flower(self, path: str, *, auth: bool = True, **params: Any) -> httpx.Response:
        creds = (FLOWER_USER, FLOWER_PASSWORD) if auth else None
        return httpx.get(f"{self.flower_url}{path}", params=params, auth=creds, timeout=30)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, shared_data: Path) -> Iterator[Fleet]:
    import redis

    from db.producer import submit
    from rmscore.settings import Settings
    from worker.runner import node_name

    tmp = tmp_path_factory.mktemp("monitoring")
    db_url = f"sqlite:///{tmp / 'rmscore.db'}"
    broker_url = f"{REDIS_URL}/{REDIS_DB}"
    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    extra = {}
    for name in ("tiny-idle", "tiny-check"):
        extra[name] = tmp / name
        extra[name].symlink_to(tiny_model_dir, target_is_directory=True)
    metrics_port, api_port, flower_port = free_port(), free_port(), free_port()
    env = service_env(
        db_url,
        broker_url,
        tiny_model_dir,
        RMSCORE_MODELS=json.dumps([str(p) for p in extra.values()]),
        RMSCORE_HEARTBEAT_INTERVAL="1",
        RMSCORE_FLOWER_BASIC_AUTH=f"{FLOWER_USER}:{FLOWER_PASSWORD}",
        RMSCORE_METRICS_TOKEN=METRICS_TOKEN,  # the API's /metrics needs it (or an admin key)
    )
    settings = Settings(
        database_url=db_url, broker_url=broker_url, model=str(tiny_model_dir), models=[str(p) for p in extra.values()],
        _env_file=None,
    )  # fmt: skip
    db = migrated(db_url)

    procs: list[subprocess.Popen[bytes]] = []
    try:
        # The worker under its default name, with the port from the command line (not the setting).
        name = node_name("tiny", "cpu")
        proc = launch(["worker", "--device", "cpu", "--metrics-port", str(metrics_port)], env, tmp / "worker.log")
        procs.append(proc)
        worker = WorkerProc(name, proc, tmp / "worker.log", env).wait_ready(client)
        procs.append(launch(["api", "--port", str(api_port)], env, tmp / "api.log"))
        api_url = f"http://127.0.0.1:{api_port}"
        wait_http(f"{api_url}/healthz", procs[-1], tmp / "api.log")
        procs.append(launch(["flower", "--port", str(flower_port)], env, tmp / "flower.log"))
        flower_url = f"http://127.0.0.1:{flower_port}"
        wait_http(f"{flower_url}/api/workers", procs[-1], tmp / "flower.log", auth=(FLOWER_USER, FLOWER_PASSWORD))

        with gzip.open(shared_data / "hh-rlhf-harmless-base-test.jsonl.gz", "rb") as f:
            pairs = [next(f) for _ in range(JOB_PAIRS)]
        (tmp / "pairs.jsonl").write_bytes(b"".join(pairs))
        job_id = submit(tmp / "pairs.jsonl", chunk_size=CHUNK_SIZE, settings=settings, db=db).job.id
        # Chunks for a model nobody serves stay in its queue: the depth the API must report.
        idle_size = JOB_PAIRS // IDLE_CHUNKS + 1
        submit(tmp / "pairs.jsonl", model="tiny-idle", chunk_size=idle_size, settings=settings, db=db)

        from db.jobs import get_job

        wait_until(lambda: get_job(db, job_id).status == "completed", 180, f"job {job_id} to complete", 0.3)
        yield Fleet(
            env, settings, client, tmp, tiny_model_dir, extra["tiny-check"], worker,
            f"http://127.0.0.1:{metrics_port}/metrics", api_url, flower_url, job_id, JOB_PAIRS, procs,
        )  # fmt: skip
    finally:
        stop_all(procs)
        client.flushdb()
