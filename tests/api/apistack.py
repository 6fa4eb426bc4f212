"""Helpers and fixtures for the API tests: a real stack per database backend (`rmscore api` and
`rmscore worker` processes on the tiny model), real Redis (db 13 for SQLite, 14 for PostgreSQL)
and a real database. PostgreSQL tests live in a schema of their own, dropped afterwards, so they
never meet other suites' tables."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import free_port, launch, stop_all, wait_http
from testkit import CLI, REPO

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

PG_URL = os.environ.get("RMSCORE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("RMSCORE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_DB = {"sqlite": 13, "postgresql": 14}
# Tests that count a tenant's jobs or scores own it alone; test_api_trust.py owns frank..ivan.
TENANTS = ("alice", "bob", "carol", "dave", "erin", "fuzz", "frank", "grace", "heidi", "ivan")
# An item with this custom_id makes the stack's worker raise, with a secret-looking text in the exception.
POISON_ID = "poison-me"


@dataclass
class Stack:
    backend: str
    url: str
    db_url: str
    broker_url: str
    env: dict[str, str]
    keys: dict[str, str]  # tenant -> key; "admin" -> an admin key
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def client(self, tenant: str | None = "alice", **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[tenant]}"} if tenant else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120, **kw)

    def api(self, tenant: str = "alice") -> Any:
        from rmscore.client import Client

        return Client(self.url, self.keys[tenant], timeout=120)

    def db(self) -> Any:
        from db.session import get_engine

        return get_engine(self.db_url)


def _pg_schema() -> tuple[str, str]:
    import psycopg

    schema = f"rmscore_api_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return schema, f"{PG_URL}?options=-csearch_path%3D{schema}"


def _drop_pg_schema(schema: str) -> None:
    import psycopg

    from db.session import _engines

    for url in [u for u in _engines if schema in u]:
        _engines.pop(url).dispose()
    with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def stack_env(tiny: Path, db_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMSCORE_")}
    env.update(
        RMSCORE_DATABASE_URL=db_url,
        RMSCORE_BROKER_URL=broker_url,
        RMSCORE_MODEL=str(tiny),
        RMSCORE_DEVICE="cpu",
        RMSCORE_AUTH="enabled",
        RMSCORE_CHUNK_SIZE="16",
        RMSCORE_SYNC_TIMEOUT="60",
        RMSCORE_HEARTBEAT_INTERVAL="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=str(REPO),
        # Inert unless an item has this custom_id: then scoring it raises in the worker (worker/faults.py).
        RMSCORE_FAULT_POISON=POISON_ID,
    )
    env.update(extra)
    return env


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[Stack]:
    import redis

    from db.api_keys import create_key
    from db.migrate import upgrade
    from db.session import get_engine

    backend = request.param
    tmp = tmp_path_factory.mktemp(f"stack-{backend}")
    schema = None
    if backend == "sqlite":
        db_url = f"sqlite:///{tmp / 'rmscore.db'}"
    else:
        schema, db_url = _pg_schema()
    broker_url = f"{REDIS_URL}/{REDIS_DB[backend]}"
    redis.Redis.from_url(broker_url).flushdb()
    upgrade(get_engine(db_url))
    keys = {t: create_key(get_engine(db_url), t)[0] for t in TENANTS}
    keys["admin"] = create_key(get_engine(db_url), "root", admin=True)[0]

    port = free_port()
    env = stack_env(tiny_model_dir, db_url, broker_url)
    s = Stack(backend, f"http://127.0.0.1:{port}", db_url, broker_url, env, keys, tmp)
    try:
        s.procs.append(launch(["worker"], env, tmp / "worker.log"))
        s.procs.append(launch(["api", "--port", str(port)], env, tmp / "api.log"))
        wait_http(f"{s.url}/readyz", s.procs[-1], tmp / "api.log")
        yield s
    finally:
        stop_all(s.procs)
        if schema is not None:
            _drop_pg_schema(schema)


def wait_job(
    client: httpx.Client,
    job_id: str,
    timeout: float = 120,
    until: tuple[str, ...] = ("completed", "failed", "cancelled"),
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s: {job}")
        time.sleep(0.3)


def read_jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


BAD_LINES = [
    b"{not json",
    b"",
    json.dumps({"prompt": "only a prompt"}).encode(),
    json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: yes", "rejected": 3}).encode(),
]


@pytest.fixture(scope="session")
def hh_file(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 HH-RLHF pairs with bad lines (and a blank one) among them, gzipped."""
    with gzip.open(shared_data / "hh-rlhf-harmless-base-test.jsonl.gz", "rb") as f:
        lines = [next(f).rstrip(b"\n") for _ in range(40)]
    for i, bad in enumerate(BAD_LINES):
        lines.insert(5 + 9 * i, bad)
    path = tmp_path_factory.mktemp("data") / "hh.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(scope="session")
def hh_reference(hh_file: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """What `rmscore score` writes for hh_file: the reference every job's results must equal."""
    out = tmp_path_factory.mktemp("ref") / "ref.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMSCORE_")}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    subprocess.run(
        [*CLI, "score", str(hh_file), "--model", str(tiny_model_dir), "--device", "cpu", "-o", str(out)],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    return read_jsonl(out.read_text())
