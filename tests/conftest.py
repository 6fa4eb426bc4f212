"""Fixtures every suite may use: the shared data sets, a tiny model built once per session, fresh
PostgreSQL schemas, and a launcher for real `rmscore worker` processes. Helpers live in `testkit`.

Suites that need their own variants define fixtures of the same name in their own conftest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import WorkerProc, start_worker_proc
from testkit import REPO, clean_env, pg_admin, run_cli

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout: real data sets for tests, never needed at run time."""
    path = REPO.parent / "shared" / "data"
    assert path.is_dir(), f"{path} is missing: tests need the project's shared data sets"
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny reward model, built once per session by `rmscore make-tiny-model`."""
    path = tmp_path_factory.mktemp("models") / "tiny"
    run_cli(["make-tiny-model", str(path), "--size", "tiny"], clean_env())
    return path


@pytest.fixture(scope="session")
def other_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tiny model under the same directory name (`tiny`) and shapes, other random weights
    (`--seed 1`), built once per session. Read-only: a test that changes files copies it first."""
    path = tmp_path_factory.mktemp("models-seed1") / "tiny"
    run_cli(["make-tiny-model", str(path), "--size", "tiny", "--seed", "1"], clean_env())
    return path


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[Callable[[str], str]]:
    """Factory: a PostgreSQL URL whose tables live in a fresh schema, dropped at the end of the session."""
    made: list[str] = []

    def make(prefix: str) -> str:
        from testkit import PG_URL

        schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
        pg_admin(f"CREATE SCHEMA {schema}")
        made.append(schema)
        return f"{PG_URL}?options=-csearch_path%3D{schema}"

    yield make
    from db.session import _engines

    for schema in made:
        for url in [u for u in _engines if schema in u]:
            _engines.pop(url).dispose()
        pg_admin(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProc]]:
    """Launcher: `start_worker(env, name, args=[...])` -> WorkerProc; any still running is stopped after the test."""
    started: list[WorkerProc] = []

    def start(env: dict[str, str], name: str, args: list[str] | None = None) -> WorkerProc:
        w = start_worker_proc(env, name, tmp_path / f"worker-{name}.log", args)
        started.append(w)
        return w

    yield start
    for w in started:
        if w.alive():
            w.proc.send_signal(signal.SIGTERM)
    for w in started:
        try:
            w.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
