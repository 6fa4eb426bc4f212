"""A migrated database per backend (SQLite file, PostgreSQL schema), emptied before each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, delete
from testkit import database_url, redis_url


@pytest.fixture(scope="session")
def _databases(tmp_path_factory: pytest.TempPathFactory, pg_schema_url: Callable[[str], str]) -> dict[str, Engine]:
    from db.migrate import upgrade
    from db.session import get_engine

    out = {}
    for backend in ("sqlite", "postgresql"):
        engine = get_engine(database_url(backend, tmp_path_factory.mktemp(backend), pg_schema_url, "rmscore_db"))
        upgrade(engine)
        out[backend] = engine
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, _databases: dict[str, Engine]) -> Iterator[Engine]:
    from db.models import Base
    from db.session import writing

    engine = _databases[request.param]
    with writing(engine) as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
    yield engine


@pytest.fixture
def sqlite_db(_databases: dict[str, Engine]) -> Engine:
    return _databases["sqlite"]


@pytest.fixture
def broker(db: Engine):  # type: ignore[no-untyped-def]
    """(settings, redis client, celery app) on this suite's own Redis database, emptied first."""
    import redis

    from rmscore.broker import create_app
    from rmscore.settings import Settings

    url = redis_url("db")
    client = redis.Redis.from_url(url)
    client.flushdb()
    settings = Settings(broker_url=url, database_url=str(db.url), model="tiny-model", _env_file=None)
    yield settings, client, create_app(settings)
    client.flushdb()
