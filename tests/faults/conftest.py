"""Fault tests: each test gets its own `redis-server` (a free port, no persistence: killed and
restarted by the test) and its own database (a SQLite file, or a fresh PostgreSQL schema), real
`rmscore worker` processes on the tiny model, and `rmscore score` as the clean run to compare with.

Leases of 5 s and a reconciler every second keep recovery quick; tiny chunks make sure faults land
mid-job. Helpers live in faultkit.py.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faultkit import N_PAIRS, POISON_ID, POISON_LINE, FaultEnv
from harness import RedisServer
from testkit import CLI, REPO, clean_env, database_url


@pytest.fixture(scope="session")
def fault_input(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first N_PAIRS HH-RLHF pairs with a custom_id each; one of them is the poison item's id."""
    with gzip.open(shared_data / "hh-rlhf-harmless-base-test.jsonl.gz", "rt") as f:
        rows = [json.loads(next(f)) for _ in range(N_PAIRS)]
    for n, row in enumerate(rows, start=1):
        row["custom_id"] = POISON_ID if n == POISON_LINE else f"hh{n}"
    path = tmp_path_factory.mktemp("faults-input") / "hh.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def clean_reference(fault_input: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """What a clean run (`rmscore score`, no broker, no database) gives for fault_input."""
    out = tmp_path_factory.mktemp("faults-ref") / "ref.jsonl"
    cmd = [*CLI, "score", str(fault_input), "--model", str(tiny_model_dir), "--device", "cpu", "-o", str(out)]
    proc = subprocess.run(cmd, env=clean_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture
def fault_env(
    tmp_path: Path, tiny_model_dir: Path, pg_schema_url: Any, start_worker: Any
) -> Iterator[Callable[..., FaultEnv]]:
    """Factory: `fault_env(backend="sqlite", redis_password=None, db_password=None, **env)` -> FaultEnv.

    Each FaultEnv has its own Redis; the database is a SQLite file or a fresh PostgreSQL schema."""
    made: list[FaultEnv] = []

    def make(
        backend: str = "sqlite", *, redis_password: str | None = None, db_password: str | None = None, **extra: str
    ) -> FaultEnv:
        server = RedisServer(tmp_path / "redis.log", password=redis_password).start()
        db_url = database_url(backend, tmp_path, pg_schema_url, "rmscore_faults")
        if db_password:  # the local server trusts loopback: the password is carried, never checked
            db_url = db_url.replace("://postgres@", f"://postgres:{db_password}@", 1)
        env = FaultEnv.create(backend, db_url, server, tiny_model_dir, tmp_path, start_worker, **extra)
        made.append(env)
        return env

    yield make
    for env in made:
        env.close()
