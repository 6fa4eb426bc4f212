"""`rmscore db upgrade`: the migrations build exactly the models' schema, and concurrent upgrades are safe."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from testkit import clean_env, database_url, run_cli

import db.api_keys  # noqa: F401 - its table is part of the schema
from db.migrate import current_revision, head_revision, upgrade
from db.models import Base
from db.session import make_engine


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_build_the_models_schema(backend: str, tmp_path: Path, pg_schema_url: Callable[[str], str]) -> None:
    url = database_url(backend, tmp_path, pg_schema_url, "rmscore_mig")
    engines = [make_engine(url) for _ in range(4)]
    errors: list[BaseException] = []

    def up(e) -> None:  # type: ignore[no-untyped-def]
        try:
            upgrade(e)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    # Four processes' worth of engines upgrading a fresh database at once: one migrates, the rest wait.
    threads = [threading.Thread(target=up, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = engines[0]
    assert current_revision(db) == head_revision()
    with db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    assert {"jobs", "items", "results", "chunks"} <= set(inspect(db).get_table_names())
    if backend == "sqlite":
        with db.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    for e in engines:
        e.dispose()


def test_cli_db_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    proc = run_cli(["db", "upgrade"], clean_env(RMSCORE_DATABASE_URL=url))
    assert head_revision() in proc.stderr
    assert current_revision(make_engine(url)) == head_revision()
